"""celeriac behind Sentinel (real ``redis-server --sentinel`` processes): Celery's URL form and the
compact one, a worker and a producer following a failover without a restart, and durable sends
(``broker_wait_replicas``): a producer sends without pause while the master is SIGKILLed."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import pytest
from tests.support import running

from celeriac import Celeriac
from celeriac.exceptions import BrokerError
from celeriac.testing import RedisSentinel

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _app(url: str, seen: list[int], **settings: Any) -> Celeriac:
    app = Celeriac("se", broker=url, from_env=False, **settings)

    @app.task(name="record")
    def record(i: int) -> int:
        seen.append(i)
        return i

    return app


def test_celery_url_form_and_the_compact_form_reach_the_master() -> None:
    with RedisSentinel(replicas=1, sentinels=3) as topo:
        seen: list[int] = []
        celery_form = _app(
            topo.url,
            seen,
            broker_transport_options={"master_name": topo.master_name},
            task_ignore_result=False,
        )
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in topo.sentinels)
        compact = _app(f"redis+sentinel://{hosts}/{topo.master_name}/0", seen, task_ignore_result=False)
        with running(celery_form, concurrency=4):
            assert celery_form.tasks["record"].delay(1).get(timeout=20) == 1
            assert compact.tasks["record"].delay(2).get(timeout=20) == 2
        celery_form.close()
        compact.close()


def test_a_sentinel_url_without_a_master_name_says_what_to_add() -> None:
    app = Celeriac("se", broker="sentinel://127.0.0.1:1;sentinel://127.0.0.1:2", from_env=False)
    broker = app.broker
    with pytest.raises(BrokerError, match="master_name"):
        broker.sync  # noqa: B018 - building the client is enough
    app.close()


def _send_through_failover(wait_replicas: int) -> tuple[list[int], list[int], int]:
    """Send without pause while the master is SIGKILLed and a replica promoted; then let a worker
    drain. Returns (sends that returned, tasks that ran, sends that raised)."""
    with RedisSentinel(replicas=2, sentinels=3) as topo:
        seen: list[int] = []
        app = _app(
            topo.url,
            seen,
            broker_transport_options={"master_name": topo.master_name},
            broker_wait_replicas=wait_replicas,
            broker_wait_timeout_s=1.0,
        )
        record = app.tasks["record"]
        sent: list[int] = []
        failed = 0
        stop = threading.Event()

        def produce() -> None:
            nonlocal failed
            i = 0
            while not stop.is_set():
                try:
                    record.delay(i)
                    sent.append(i)
                except Exception:
                    failed += 1
                i += 1

        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(1.0)
        topo.kill_master_and_wait_failover()
        time.sleep(1.0)  # the producer follows the new master without a restart
        stop.set()
        producer.join()
        with running(app, concurrency=8) as worker:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not set(sent) <= set(seen):
                time.sleep(0.1)
            time.sleep(0.5)
            del worker
        app.close()
    # every connection was closed with the app: nothing is left for the garbage collector to warn
    # about in a later test (pytest turns those ResourceWarnings into errors)
    gc.collect()
    return sent, seen, failed


def test_durable_sends_survive_a_master_sigkill() -> None:
    sent, seen, failed = _send_through_failover(wait_replicas=1)
    lost = set(sent) - set(seen)
    print(f"broker_wait_replicas=1: {len(sent)} sends returned, {failed} raised, {len(lost)} lost")
    assert len(sent) > 100
    assert not lost


def test_without_wait_the_loss_is_measured() -> None:
    sent, seen, failed = _send_through_failover(wait_replicas=0)
    lost = set(sent) - set(seen)
    # not asserted to be > 0: whether acknowledged sends die with the master depends on timing
    print(f"broker_wait_replicas=0: {len(sent)} sends returned, {failed} raised, {len(lost)} lost")
    assert len(sent) > 100
