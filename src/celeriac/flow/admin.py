"""The operator side of flow control: rate limits at run time, queue pause and resume."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._redis.client import to_str, translate_errors
from ..exceptions import ConfigurationError
from .keys import FlowKeys
from .rates import parse_rate

if TYPE_CHECKING:
    import redis

    from ..app import Celeriac


class FlowAdmin:
    """Change limits and pause queues for every worker of an app (they pick changes up within
    ``FLOW_REFRESH_S``, 5 s). Also reachable as ``app.control``.

    Args:
        app: the app (its Redis and key prefix).
    """

    def __init__(self, app: Celeriac) -> None:
        from ..broker.redis import RedisBroker

        broker = app.broker
        if not isinstance(broker, RedisBroker):
            raise ConfigurationError("broker_url", "flow control needs a Redis broker")
        self.app = app
        self.url = broker.url
        self.client: redis.Redis = broker.sync
        self.keys = FlowKeys(broker.keys.prefix)

    def rate_limit(self, task_name: str, rate_limit: str | float | None, **_celery: object) -> None:
        """Set a task's rate limit on every worker (Celery's ``app.control.rate_limit``): ``"20/s"``,
        ``"10/m"``, ``"500/h"``; ``0``/``None`` lifts the limit; ``"default"`` returns to the
        decorator's. Celery's ``destination=``/``reply=`` are accepted and ignored (every worker).

        Raises:
            ConfigurationError: not a rate.
        """
        field = f"rate:{task_name}"
        with translate_errors(self.url):
            if rate_limit == "default":
                self.client.hdel(self.keys.config, field)
                return
            rate = parse_rate(rate_limit, f"rate_limit of {task_name}")
            self.client.hset(self.keys.config, field, rate.text if rate is not None else "0")

    def rate_limits(self) -> dict[str, str]:
        """Rates set at run time, by task name (``"0"``: lifted)."""
        with translate_errors(self.url):
            raw = self.client.hgetall(self.keys.config)
        return {to_str(k)[5:]: to_str(v) for k, v in raw.items() if to_str(k).startswith("rate:")}

    def pause_queue(self, queue: str) -> bool:
        """Pause a queue: sends are still accepted; workers take nothing from it until resumed.
        Returns False when it was paused already."""
        with translate_errors(self.url):
            return bool(self.client.hset(self.keys.config, f"paused:{queue}", "1"))

    def resume_queue(self, queue: str) -> bool:
        """Resume a paused queue. Returns False when it was not paused."""
        with translate_errors(self.url):
            return bool(self.client.hdel(self.keys.config, f"paused:{queue}"))

    def paused_queues(self) -> set[str]:
        """The paused queues."""
        with translate_errors(self.url):
            raw = self.client.hgetall(self.keys.config)
        return {to_str(k)[7:] for k in raw if to_str(k).startswith("paused:")}
