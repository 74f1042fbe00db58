"""The Redis plumbing shared by the Redis broker and the Redis result store.

Neither of those imports the other: both import this package. It holds client construction and error
translation (:mod:`.client`), the whole key schema (:mod:`.keys`), the Lua script loader
(:mod:`.scripts`) and the scripts themselves (``lua/``, one operation per file). Nothing is imported
here: the key schema is pure, while the client and scripts import redis-py.
"""
