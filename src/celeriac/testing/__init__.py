"""Public test helpers: private Redis servers, in-process draining, eager mode."""

from .server import RedisServer, free_port, redis_server_binary

__all__ = ["RedisServer", "free_port", "redis_server_binary"]
