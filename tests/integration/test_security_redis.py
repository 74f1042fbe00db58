"""Security on a real redis-server: TLS with a CA made here, AUTH, the README's minimal ACL, clear
NOPERM errors, pickle and signing with a real worker, and no password in any error or log line."""

from __future__ import annotations

import datetime
import logging
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from celeriac import BrokerConnectionError, BrokerError, Celeriac, DecodeError
from celeriac.cli import main as cli_main
from celeriac.message import Message, new_task_id
from celeriac.testing import RedisServer, ThreadWorker, free_port
from celeriac.testing.server import TLSFiles

from .conftest import eventually

pytestmark = pytest.mark.redis

README = Path(__file__).resolve().parents[2] / "README.md"
ACL_PASSWORD = "acl-Pa55:w@rd/x"  # characters that need percent-encoding in a URL
SIGNING_KEY = "n" * 32
OLD_SIGNING_KEY = "o" * 32


# ---- TLS -------------------------------------------------------------------------------------------
def _write_pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def make_certificates(directory: Path, *, client: bool = False) -> TLSFiles:
    """A CA, a server certificate for localhost/127.0.0.1 signed by it, and optionally a client one."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("celeriac test CA"))
        .issuer_name(name("celeriac test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    server_cert, server_key = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    files = {
        "ca_file": _write_pem(directory / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        "cert_file": _write_pem(directory / "server.pem", server_cert),
        "key_file": _write_pem(directory / "server.key", server_key),
    }
    if client:
        client_cert, client_key = leaf("celeriac-client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
        files["client_cert_file"] = _write_pem(directory / "client.pem", client_cert)
        files["client_key_file"] = _write_pem(directory / "client.key", client_key)
    return TLSFiles(**files)


def _add_tasks(app: Celeriac) -> tuple[Any, Any]:
    @app.task(name="sec.add", ignore_result=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="sec.aadd", ignore_result=False)
    async def aadd(x: int, y: int) -> int:
        return x + y

    return add, aadd


@pytest.mark.parametrize("client_certificate", [False, True], ids=["server-cert", "mutual-tls"])
def test_producer_worker_and_results_over_tls(
    tmp_path: Path, thread_worker: Callable[..., ThreadWorker], client_certificate: bool, reliability: Any
) -> None:
    tls = make_certificates(tmp_path, client=client_certificate)
    with RedisServer(tls=tls) as server:
        assert server.url.startswith("rediss://localhost:")
        app = Celeriac("tls", broker=server.url)
        add, aadd = _add_tasks(app)
        thread_worker(app)
        started = time.monotonic()
        assert add.delay(1, 2).get(timeout=10) == 3
        round_trip_ms = (time.monotonic() - started) * 1000
        assert aadd.apply_async((2, 3), countdown=0.05).get(timeout=10) == 5  # delayed set + wake-up
        results = app.send_many([add.s(i, i) for i in range(20)])
        assert [r.get(timeout=10) for r in results] == [2 * i for i in range(20)]
        refused = ""
        if client_certificate:  # the server demands a client certificate: without one, no entry
            bare = Celeriac("tls", broker=server.url.split("&ssl_certfile")[0])
            with pytest.raises(BrokerConnectionError) as info:
                bare.broker.stats("default")
            refused = f"; a client without a certificate refused ({type(info.value).__name__})"
            bare.close()
        app.close()
    kind = "mutual TLS (client certificates required)" if client_certificate else "TLS (server certificate)"
    reliability.record(
        f"Transport: {kind}, CA made by the test",
        "producer, worker, delayed task and results over rediss://",
        f"22 of 22 tasks ran over TLS (first delay+get {round_trip_ms:.0f} ms){refused}",
    )


def test_a_client_that_does_not_trust_the_ca_cannot_connect(tmp_path: Path, reliability: Any) -> None:
    tls = make_certificates(tmp_path / "real" if (tmp_path / "real").mkdir() is None else tmp_path)
    other = make_certificates(tmp_path / "other" if (tmp_path / "other").mkdir() is None else tmp_path)
    with RedisServer(tls=tls) as server:
        url = f"rediss://:hunter2@localhost:{server.port}/0?ssl_ca_certs={other.ca_file}"
        app = Celeriac("tls", broker=url)
        with pytest.raises(BrokerConnectionError, match="certificate verify failed") as info:
            app.broker.stats("default")
        assert "hunter2" not in str(info.value)
        plain = Celeriac("tls", broker=f"redis://localhost:{server.port}/0")  # TLS port, no TLS
        with pytest.raises(BrokerConnectionError) as plain_info:
            plain.broker.stats("default")
        app.close()
        plain.close()
    reliability.record(
        "TLS: a client that trusts another CA; a plain client on the TLS port",
        "both refused with BrokerConnectionError; the password is not in the error",
        f"2 of 2 refused with {type(info.value).__name__} and {type(plain_info.value).__name__} "
        "('certificate verify failed' in the first)",
    )


# ---- AUTH --------------------------------------------------------------------------------------------
def test_requirepass_right_and_wrong_password(
    thread_worker: Callable[..., ThreadWorker], reliability: Any
) -> None:
    with RedisServer(args=["--requirepass", "s3cret-PW"]) as server:
        good = Celeriac("auth", broker=f"redis://:s3cret-PW@127.0.0.1:{server.port}/0")
        add, _ = _add_tasks(good)
        thread_worker(good)
        assert add.delay(2, 2).get(timeout=10) == 4

        bad = Celeriac("auth", broker=f"redis://:wrong-PW@127.0.0.1:{server.port}/0")
        bad_add, _ = _add_tasks(bad)
        with pytest.raises(BrokerError, match="refused the credentials") as info:
            bad_add.delay(1, 1)
        assert not isinstance(info.value, BrokerConnectionError)
        assert "wrong-PW" not in str(info.value) and "s3cret" not in str(info.value)
        # a worker with wrong credentials stops at start with the error: no retry loop
        with pytest.raises(BrokerError, match="refused the credentials") as worker_info:
            ThreadWorker(bad).start()
        good.close()
        bad.close()
    reliability.record(
        "AUTH: wrong password (requirepass)",
        "a send raises BrokerError (not a connection error, no retry loop); a worker stops at start; "
        "no password in the errors",
        f"2 of 2 refused ({type(info.value).__name__}, {type(worker_info.value).__name__}: "
        f"{str(info.value).split(': ', 1)[-1][:60]!r}); the right password ran 1 task",
    )


# ---- ACL ---------------------------------------------------------------------------------------------
def readme_acl() -> list[str]:
    """The ``ACL SETUSER`` line of the README's Security section, as arguments."""
    text = README.read_text()
    block = re.search(r"<!-- acl:begin -->\s*```text\n(ACL SETUSER [^\n]+)\n```", text)
    assert block, "the README lost its ACL block"
    return block.group(1).split()


def test_the_security_page_gives_the_readme_acl() -> None:
    """docs/security.md repeats the README's ACL line: the two must not drift apart."""
    page = (README.parent / "docs" / "security.md").read_text()
    block = re.search(r"<!-- acl:begin -->\s*```text\n(ACL SETUSER [^\n]+)\n```", page)
    assert block, "docs/security.md lost its ACL block"
    assert block.group(1).split() == readme_acl()


def acl_commands(rule: list[str]) -> set[str]:
    return {word[1:] for word in rule if word.startswith("+")}


@dataclass
class AclRedis:
    server: RedisServer
    admin: redis.Redis

    def set_user(self, *extra: str) -> str:
        """Create the README's user with ``extra`` rules; return its URL (database 1: SELECT is used)."""
        rule = [w if w != ">CHANGE-ME" else f">{ACL_PASSWORD}" for w in readme_acl()]
        self.admin.execute_command(*rule[:2], *rule[2:], *extra)  # type: ignore[no-untyped-call]
        password = ACL_PASSWORD.replace("%", "%25").replace(":", "%3A").replace("@", "%40")
        password = password.replace("/", "%2F")
        return f"redis://celeriac:{password}@127.0.0.1:{self.server.port}/1"

    def denied(self) -> list[dict[str, Any]]:
        entries = self.admin.execute_command("ACL", "LOG")  # type: ignore[no-untyped-call]
        out = []
        for entry in entries:
            fields = dict(zip(entry[::2], entry[1::2])) if isinstance(entry, list) else entry
            fields = {_s(k): _s(v) for k, v in fields.items()}
            if fields.get("object") != "client|setinfo":  # Redis 7.2+: redis-py ignores the refusal
                out.append(fields)
        return out

    def used(self) -> set[str]:
        stats = self.admin.info("commandstats")
        return {name.removeprefix("cmdstat_") for name in stats}


def _noperm(exc: BaseException) -> str:
    """The part of a denied command's error that Redis wrote (NOPERM ...)."""
    text = str(exc)
    return text[text.index("NOPERM") :].split(")")[0][:80] if "NOPERM" in text else text[:80]


def _s(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
def acl_redis(fresh_redis: RedisServer) -> Iterator[AclRedis]:
    admin = redis.Redis.from_url(fresh_redis.url)
    yield AclRedis(fresh_redis, admin)
    admin.close()


def test_the_readme_acl_is_exactly_what_producer_worker_and_cli_use(
    acl_redis: AclRedis, thread_worker: Callable[..., ThreadWorker], reliability: Any
) -> None:
    url = acl_redis.set_user()
    acl_redis.admin.config_resetstat()
    acl_redis.admin.execute_command("ACL", "LOG", "RESET")  # type: ignore[no-untyped-call]
    app = Celeriac("acl", broker=url, lease_s=0.6, task_ignore_result=False)
    add, _ = _add_tasks(app)
    release, started = threading.Event(), threading.Event()
    attempts: list[int] = []

    @app.task(name="sec.slow")
    def slow() -> str:
        started.set()
        release.wait(20)  # runs until the test saw its lease renewed (XCLAIM)
        return "slow"

    @app.task(name="sec.flaky", bind=True)
    def flaky(self: Any) -> int:
        attempts.append(self.request.retries)
        if self.request.retries == 0:
            raise self.retry(countdown=0.05)
        return self.request.retries

    limit_gate = threading.Event()

    @app.task(name="sec.limited", max_concurrency=1)  # a concurrency limit: holders, a wait list
    def limited(i: int) -> int:
        limit_gate.wait(20)
        return i

    @app.task(name="sec.reject")
    def reject() -> None:
        from celeriac import Reject

        raise Reject("bad input")

    worker = thread_worker(app)
    assert add.delay(1, 2).get(timeout=10) == 3
    assert add.apply_async((3, 4), countdown=0.05).get(timeout=10) == 7
    assert flaky.delay().get(timeout=10) == 1
    limited_results = [limited.delay(i) for i in range(3)]
    eventually(lambda: "rpush" in acl_redis.used())  # the others wait behind the one running
    limit_gate.set()
    assert [r.get(timeout=10) for r in limited_results] == [0, 1, 2]
    r = reject.delay()
    worker.wait_outcomes(lambda outs: any(o.kind == "dead" for o in outs))
    assert r.state.value == "FAILURE"
    r.forget()
    slow_result = slow.delay()
    eventually(lambda: "xclaim" in acl_redis.used())  # the lease loop renewed the running task
    release.set()
    assert slow_result.get(timeout=10) == "slow"
    runner = CliRunner(env={"COLUMNS": "200"})
    for args in (
        ["status"],
        ["dlq", "list", "default"],
        ["dlq", "replay", "default", "--all"],
    ):
        result = runner.invoke(cli_main, ["--broker", url, *args], catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
    # the purges act only on what is there: give each something that no running worker takes away
    # (the replayed task is dead-lettered again, or not yet, depending on timing)
    worker.wait_outcomes(lambda outs: sum(o.kind == "dead" for o in outs) >= 2)
    add.apply_async((5, 6), countdown=600)
    for args in (["dlq", "purge", "default", "-y"], ["purge", "default", "-y"]):
        result = runner.invoke(cli_main, ["--broker", url, *args], catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
        assert "deleted 1" in result.output or "purged 1" in result.output, (args, result.output)
    # task control as that user: revoke (CLI), a unique send, a prioritized send, progress
    result = runner.invoke(cli_main, ["--broker", url, "revoke", "no-such-task"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    held = add.apply_async((1, 1), unique_key="acl-unique", countdown=600)
    assert add.apply_async((1, 1), unique_key="acl-unique", countdown=600).id == held.id
    assert add.apply_async((2, 2), priority=5).get(timeout=10) == 4
    assert add.apply_async((3, 3), unique_for=30).get(timeout=10) == 6  # lock released in the settle
    add.update_state(task_id="acl-progress", state="PROGRESS", meta={"i": 1})
    assert app.AsyncResult("acl-progress").state == "PROGRESS"
    release.clear()
    started.clear()
    handed_back = slow.delay()
    assert started.wait(10)
    worker.stop(cold=True)  # hands the running task back (release.lua marks the consumer: HINCRBY)
    release.set()
    second = thread_worker(app)  # reclaims it at once, runs it, then leaves the group (DELCONSUMER)
    assert handed_back.get(timeout=10) == "slow"
    second.stop()
    app.close()

    assert acl_redis.denied() == []
    # AUTH and HELLO (the handshake) need no rule; the test's own admin commands do not count
    used = acl_redis.used() - {"auth", "hello", "acl|log", "config|resetstat"}
    rule = acl_commands(readme_acl())
    assert used <= rule, f"used but not in the README's ACL: {sorted(used - rule)}"
    # every listed command was needed, except the health-check PING (only after 30 s idle)
    assert rule - used <= {"ping"}, f"in the README's ACL but never used: {sorted(rule - used - {'ping'})}"
    reliability.record(
        "Least privilege: the README's ACL user runs producer, worker (retries, dead letters, lease "
        "renewal, hand-back, reclaim) and CLI status/dlq/purge",
        "Redis denied nothing (ACL LOG empty); every command used is in the rule; every rule but "
        "PING was used",
        f"{len(used)} commands used of {len(rule)} allowed, 0 denied; 5 CLI commands exited 0",
    )


def test_a_producer_lacking_a_permission_gets_a_clear_noperm_error(
    acl_redis: AclRedis, reliability: Any
) -> None:
    url = acl_redis.set_user("-xadd")
    app = Celeriac("acl", broker=url)
    add, _ = _add_tasks(app)
    with pytest.raises(BrokerError, match=r"NOPERM .*'xadd'") as info:
        add.delay(1, 2)
    assert not isinstance(info.value, BrokerConnectionError)
    assert "denied a command to this ACL user" in str(info.value)
    assert "Pa55" not in str(info.value)

    url = acl_redis.set_user("resetkeys", "~other:*")  # commands allowed, keys not
    app2 = Celeriac("acl", broker=url)
    add2, _ = _add_tasks(app2)
    with pytest.raises(BrokerError, match="NOPERM") as keys_info:
        add2.delay(1, 2)
    app.close()
    app2.close()
    reliability.record(
        "ACL: a producer denied XADD, or denied the keys",
        "a BrokerError carrying Redis's NOPERM text, not a connection error; no password in it",
        f"2 of 2 sends refused: {_noperm(info.value)!r}; {_noperm(keys_info.value)!r}",
    )


def test_a_worker_denied_a_command_at_start_stops_with_the_error(acl_redis: AclRedis) -> None:
    url = acl_redis.set_user("-info")
    app = Celeriac("acl", broker=url)
    _add_tasks(app)
    with pytest.raises(BrokerError, match=r"NOPERM .*'info'"):
        ThreadWorker(app).start()  # raises the worker's error instead of retrying forever
    app.close()


class _Seen(logging.Handler):
    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_a_worker_denied_a_command_later_logs_it_and_recovers_once_allowed(
    acl_redis: AclRedis, thread_worker: Callable[..., ThreadWorker], reliability: Any
) -> None:
    url = acl_redis.set_user("-xreadgroup")
    app = Celeriac("acl", broker=url)
    add, _ = _add_tasks(app)
    seen = _Seen("NOPERM")
    logger = logging.getLogger("celeriac.worker")
    logger.addHandler(seen)
    try:
        thread_worker(app)
        result = add.delay(20, 22)
        assert seen.event.wait(10), "the denied fetch was not logged"
        acl_redis.admin.execute_command("ACL", "SETUSER", "celeriac", "+xreadgroup")  # type: ignore[no-untyped-call]
        allowed = time.monotonic()
        assert result.get(timeout=15) == 42
        recovered_s = time.monotonic() - allowed
    finally:
        logger.removeHandler(seen)
    app.close()
    reliability.record(
        "ACL: a running worker denied XREADGROUP, then allowed again",
        "the denial is logged (NOPERM); the worker keeps running and consumes once the ACL is fixed",
        f"denial logged; the waiting task ran {recovered_s:.2f} s after the ACL was fixed (backoff <= 5 s)",
    )


# ---- content and signing with a real worker -----------------------------------------------------------
@dataclass
class Point:
    x: int
    y: int


def _dead_letters(app: Celeriac) -> list[Any]:
    return app.broker.dead_letters("default", 100)


def test_pickle_needs_an_explicit_opt_in_on_the_worker(
    redis_url: str,
    thread_worker: Callable[..., ThreadWorker],
    caplog: pytest.LogCaptureFixture,
    reliability: Any,
) -> None:
    producer = Celeriac("pk", broker=redis_url, accept_content=("msgpack", "pickle"))
    strict = Celeriac("pk", broker=redis_url)
    for app in (producer, strict):
        app.task(name="sec.move", serializer="pickle", ignore_result=False)(lambda p: Point(p.x + 1, p.y + 1))
    strict_worker = thread_worker(strict)
    result = producer.tasks["sec.move"].delay(Point(1, 2))
    outs = strict_worker.wait_outcomes(lambda outs: len(outs) == 1)
    assert outs[0].kind == "dead" and "'pickle' refused" in outs[0].reason
    (letter,) = _dead_letters(producer)
    assert letter.task_id == result.id and "accept_content" in letter.reason
    strict_worker.stop()

    with caplog.at_level(logging.WARNING, logger="celeriac"):
        thread_worker(producer)  # a worker that accepts pickle, and says so at start
    assert any("accept_content includes 'pickle'" in rec.getMessage() for rec in caplog.records)
    assert producer.tasks["sec.move"].delay(Point(1, 2)).get(timeout=10) == Point(2, 3)
    with pytest.raises(DecodeError, match="pickled"):  # a reader that does not accept pickle
        strict.AsyncResult(producer.tasks["sec.move"].delay(Point(0, 0)).id).get(timeout=10)
    producer.close()
    strict.close()
    reliability.record(
        "Pickle sent to a worker that does not accept it",
        "dead-lettered unread with the reason; a reader without the opt-in refuses a pickled result",
        f"1 dead letter ({letter.reason[:60]!r}); 1 pickled result refused (DecodeError); "
        "1 task ran where pickle is accepted",
    )


def test_signed_messages_rotation_and_refusals_on_a_real_worker(
    redis_url: str, thread_worker: Callable[..., ThreadWorker], reliability: Any
) -> None:
    worker_app = Celeriac(
        "sg",
        broker=redis_url,
        message_signing_key=SIGNING_KEY,
        message_signing_keys=[OLD_SIGNING_KEY],
        task_ignore_result=False,
    )
    old = Celeriac("sg", broker=redis_url, message_signing_key=OLD_SIGNING_KEY)
    new = Celeriac("sg", broker=redis_url, message_signing_key=SIGNING_KEY)
    unsigned = Celeriac("sg", broker=redis_url)
    for app in (worker_app, old, new, unsigned):
        _add_tasks(app)

        @app.task(name="sec.flaky", bind=True, ignore_result=False)
        def flaky(self: Any) -> int:
            if self.request.retries < 2:
                raise self.retry(countdown=0.01)
            return self.request.retries

    worker = thread_worker(worker_app)
    assert old.tasks["sec.add"].delay(1, 1).get(timeout=10) == 2  # old key: still accepted
    assert new.tasks["sec.add"].delay(2, 2).get(timeout=10) == 4
    assert new.tasks["sec.flaky"].delay().get(timeout=10) == 2  # retries were re-signed
    refused = unsigned.tasks["sec.add"].delay(3, 3)
    signed = new.codec.encode(Message(new_task_id(), "sec.add", (4, 4)))
    tampered = signed[:-1] + bytes([signed[-1] ^ 0x01])
    new.broker.sync.xadd(new.broker.keys.queue("default").ready, {"m": tampered})  # type: ignore[attr-defined]
    worker.wait_outcomes(lambda outs: sum(o.kind == "dead" for o in outs) == 2)
    reasons = sorted(letter.reason for letter in _dead_letters(worker_app))
    assert "bad signature" in reasons[0] and "unsigned message refused" in reasons[1]
    assert refused.id in {letter.task_id for letter in _dead_letters(worker_app)}
    ran = sum(o.kind == "ack" for o in worker.outcomes)
    retried = sum(o.kind == "retry" for o in worker.outcomes)
    dead = sum(o.kind == "dead" for o in worker.outcomes)
    for app in (worker_app, old, new, unsigned):
        app.close()
    reliability.record(
        "Message signing: unsigned and tampered messages; key rotation",
        "refused and dead-lettered with the reason; old and new keys accepted; retries re-signed",
        f"{dead} refused ({', '.join(k for k in ('bad signature', 'unsigned message refused') if k in str(reasons))}), "
        f"{ran} ran (old key, new key, "
        f"a task retried {retried} times with re-signed retries)",
    )


# ---- results -----------------------------------------------------------------------------------------
def test_a_huge_result_is_replaced_by_a_clear_error(
    redis_url: str, thread_worker: Callable[..., ThreadWorker], reliability: Any
) -> None:
    from celeriac.exceptions import ResultTooLarge

    app = Celeriac("big", broker=redis_url, max_message_bytes=1 << 20)

    @app.task(name="sec.big", ignore_result=False)
    def big(n: int) -> bytes:
        return b"x" * n

    thread_worker(app)
    assert len(big.delay(1000).get(timeout=10)) == 1000
    result = big.delay(2 << 20)
    with pytest.raises(ResultTooLarge, match="result_max_bytes=1048576") as info:
        result.get(timeout=10)
    stored = app.backend.get(result.id)  # type: ignore[union-attr]
    assert stored is not None and len(stored) < 20_000
    size = re.search(r"is \d+ bytes", str(info.value))
    assert size is not None  # the error says how large the result was
    app.close()
    reliability.record(
        "Huge result (a task returns 2 MiB, result_max_bytes 1 MiB)",
        "not stored; the task fails with ResultTooLarge saying how large; a small result is stored",
        f"stored instead: an error of {len(stored):,} bytes; ResultTooLarge says {size.group(0)!r}",
    )


# ---- secrets -----------------------------------------------------------------------------------------
NASTY_PASSWORDS = ["hunter2", "hunt@er2", "hunt:er2", "hunt/er2"]


@pytest.mark.parametrize("password", NASTY_PASSWORDS)
def test_a_password_never_appears_in_errors(password: str, reliability: Any) -> None:
    url = f"redis://user:{password}@127.0.0.1:{free_port()}/0"
    try:
        app = Celeriac("sec", broker=url)
    except Exception as exc:  # a URL the parser cannot read (a "/" in the password)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        assert password not in text and "er2" not in text
        reliability.record(
            f"Password {password!r} in an unparsable broker URL",
            "the password is in no error or traceback",
            f"1 {type(exc).__name__} ({len(text):,} characters of traceback), 0 occurrences",
        )
        return
    add, _ = _add_tasks(app)
    checked = 0
    for call in (lambda: add.delay(1, 2), lambda: app.broker.stats("default")):
        with pytest.raises(BrokerConnectionError) as info:
            call()
        text = "".join(traceback.format_exception(type(info.value), info.value, info.value.__traceback__))
        assert password not in text, text
        assert "***" in str(info.value)
        checked += len(text)
    assert password not in repr(app) + repr(app.conf)
    app.close()
    reliability.record(
        f"Password {password!r} in the broker URL, Redis unreachable",
        "the password is in no error, traceback, repr(app) or repr(app.conf); shown as ***",
        f"2 BrokerConnectionErrors ({checked:,} characters of traceback) and 2 reprs, 0 occurrences",
    )


def test_a_worker_that_cannot_connect_never_logs_the_password(
    caplog: pytest.LogCaptureFixture, reliability: Any
) -> None:
    password = "hunt@er2-secret"
    app = Celeriac("sec", broker=f"redis://user:{password}@127.0.0.1:{free_port()}/0")
    _add_tasks(app)
    seen = _Seen("cannot start consuming yet")
    logging.getLogger("celeriac.worker").addHandler(seen)
    caplog.set_level(logging.DEBUG)
    worker = ThreadWorker(app)
    worker.thread.start()
    try:
        assert seen.event.wait(10), "the worker did not report the unreachable Redis"
    finally:
        logging.getLogger("celeriac.worker").removeHandler(seen)
        worker.stop()
    assert "user:***@127.0.0.1" in caplog.text
    assert "er2-secret" not in caplog.text
    for record in caplog.records:
        assert "er2-secret" not in record.getMessage()
    app.close()
    reliability.record(
        "Password in the URL of a worker that cannot reach Redis",
        "no log line holds the password; the URL is logged as user:***@host",
        f"{len(caplog.records)} log records, 0 with the password",
    )
