"""Cluster and Sentinel URLs (celeriac._topology): every form the docs show parses, and each bad form
says what is wrong. No server needed."""

from __future__ import annotations

import pytest

from celeriac._topology import connection_options, kind_of, parse


def test_cluster_urls_plain_and_tls() -> None:
    ep = parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert (ep.kind, ep.tls) == ("cluster", False)
    assert ep.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    tls = parse("rediss+cluster://app:s%3Acret@h1:7000,h2/0")
    assert tls.tls and tls.username == "app" and tls.password == "s:cret"
    assert tls.nodes == (("h1", 7000), ("h2", 6379))
    assert kind_of("REDIS+CLUSTER://h:1") == "cluster" and kind_of("redis://h:1/0") == "single"


def test_celerys_sentinel_form_and_the_compact_form() -> None:
    options = {"master_name": "mymaster", "sentinel_kwargs": {"password": "s"}, "visibility_timeout": 10}
    ep = parse("sentinel://:pw@h1:26379/2;sentinel://h2:26380;sentinel://h3", options)
    assert ep.kind == "sentinel" and ep.master_name == "mymaster" and ep.db == 2
    assert ep.nodes == (("h1", 26379), ("h2", 26380), ("h3", 26379)) and ep.password == "pw"
    assert ep.sentinel_kwargs == {"password": "s"}
    compact = parse("redis+sentinel://h1:26379,h2:26379/mymaster/3")
    assert (compact.master_name, compact.db, len(compact.nodes)) == ("mymaster", 3, 2)
    assert connection_options(options) == {"master_name": "mymaster", "sentinel_kwargs": {"password": "s"}}


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("sentinel://h1:26379;sentinel://h2:26379", {}, "master_name"),
        ("sentinel://h1:26379;redis://h2:6379", {"master_name": "m"}, "starts with sentinel://"),
        ("redis+sentinel://h1:26379", {}, "name the master"),
        ("redis+sentinel://h1:26379/m/x", {}, "database must be a number"),
        ("redis+cluster://h1:7000/1", {}, "database 0 only"),
        ("redis+cluster://h1:port", {}, "port must be a number"),
        ("redis+cluster://", {}, "no host"),
        ("redis://h:1/0", {}, "not a cluster or sentinel URL"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, options: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse(url, options)
