"""shipper/index_setup.py: which setup an index gets, and a setup that keeps failing never holds lines for ever."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from proto.options import LogOptionError
from shipper.index_setup import IndexSetup, IndexSetups, index_setup
from supervisor.logopts import parse_log_options
from tests.es_standin import EsStandin, Hold


def setup_of(**opts: str) -> IndexSetup | None:
    return index_setup(parse_log_options({"hosts": "es:9200", **opts}).values)


@pytest.mark.parametrize(("opts", "expected"), [
    ({}, None),  # logs-docker-default: ES's built-in template
    ({"index": "logs-app-prod"}, None),
    ({"index": "docker-%{+yyyy.MM.dd}"}, IndexSetup("docker", "docker-*", None)),
    ({"index": "app_logs.%{[container.name]}"}, IndexSetup("app_logs", "app_logs.*", None)),
    ({"index": "plain"}, IndexSetup("plain", "plain*", None)),
    ({"index": "d-%{+yyyy}", "setup.template.name": "n", "setup.template.pattern": "d-2*"},
     IndexSetup("n", "d-2*", None)),
    ({"index": "applogs", "setup.ilm.enabled": "true"}, IndexSetup("applogs", "applogs*", "elastic-logging-plugin")),
    ({"index": "docker-%{+yyyy.MM.dd}", "setup.template.enabled": "false"}, None),
    ({"output.elasticsearch.index": "x-%{+yyyy}", "template_name": "t", "template_pattern": "x-*"},
     IndexSetup("t", "x-*", None)),  # Elastic 7.9's names
])
def test_the_setup_of_an_index(opts: dict[str, str], expected: IndexSetup | None) -> None:
    assert setup_of(**opts) == expected


@pytest.mark.parametrize(("opts", "named"), [
    ({"index": "%{[container.name]}"}, "setup.template.name"),
    ({"index": "a-%{+yyyy.MM.dd}", "setup.ilm.enabled": "true"}, "setup.ilm.enabled"),
    ({"index": "a", "setup.ilm.enabled": "true", "setup.template.enabled": "false"}, "setup.template.enabled"),
    ({"index": "a-%{+yyyy}", "setup.template.pattern": "A-*"}, "setup.template.pattern"),
])
def test_a_setup_that_cannot_work_is_refused_by_name(opts: dict[str, str], named: str) -> None:
    with pytest.raises(LogOptionError, match=named):
        setup_of(**opts)


def test_the_ilm_template_declares_a_data_stream_with_the_policy() -> None:
    body = IndexSetup("t", "t*", "p").template_body("1.0")
    assert body["data_stream"] == {} and body["template"]["settings"] == {"index": {"lifecycle": {"name": "p"}}}
    assert "data_stream" not in IndexSetup("t", "t*", None).template_body("1.0")


def test_a_setup_failing_for_ever_lets_lines_go_after_the_wait() -> None:
    async def run(es: EsStandin) -> tuple[list[float], dict[str, Any], int]:
        ready_at: list[float] = []
        setups = IndexSetups("1.0", lambda: ready_at.append(time.monotonic()), wait=0.5)
        client = AsyncElasticsearch(es.url, max_retries=0)
        start = time.monotonic()
        setups.ensure("c1", client, IndexSetup("t", "t-*", None), (0.05, 0.1))
        setups.ensure("c2", client, IndexSetup("t", "t-*", None), (0.05, 0.1))  # the same run
        assert not setups.ready("c1")
        while not setups.ready("c1"):
            await asyncio.sleep(0.02)  # not a sync: polls a condition with the deadline below
            assert time.monotonic() - start < 5
        ready_at[:] = [t - start for t in ready_at]
        stats = setups.stats()
        await setups.close()
        await client.close()
        return ready_at, stats, len(setups.runs)

    with EsStandin() as es:
        es.fail_next(403, count=None, path="/_index_template")
        ready_at, stats, runs = asyncio.run(run(es))
    assert runs == 1
    assert len(ready_at) == 1 and 0.45 <= ready_at[0] < 2.0
    assert stats["index_setups_pending"] == 1 and stats["index_setup_failures_total"] >= 3


def test_two_shippers_setting_up_the_same_template_at_once_both_succeed_first_time() -> None:
    # With SHIPPERS=2 (or two hosts) both may find the template absent and both put it with create=true: the
    # second put is answered 400 "already exists", which is the outcome wanted, not a failure to retry.
    async def run(es: EsStandin, looks: Hold) -> list[dict[str, int]]:
        setup = IndexSetup("raced", "raced-*", "raced-policy")
        clients = [AsyncElasticsearch(es.url, max_retries=0) for _ in range(2)]
        shippers = [IndexSetups("1.0", lambda: None) for _ in clients]
        for n, (setups, client) in enumerate(zip(shippers, clients, strict=True)):
            setups.ensure(f"c{n}", client, setup, (5.0, 5.0))  # a retry would outlast the deadline below
        start = time.monotonic()
        # Both look for the template before either puts it: their looks are answered only once both came.
        while looks.waiting < 2:
            await asyncio.sleep(0.02)  # not a sync: polls a condition with the deadline below
            assert time.monotonic() - start < 5, f"{looks.waiting} of 2 shippers looked for the template"
        looks.release()
        start = time.monotonic()
        while not all(s.runs[(id(c), setup)].done for s, c in zip(shippers, clients, strict=True)):
            await asyncio.sleep(0.02)  # not a sync: polls a condition with the deadline below
            assert time.monotonic() - start < 3, "a setup was retried"
        stats = [s.stats() for s in shippers]
        for setups, client in zip(shippers, clients, strict=True):
            await setups.close()
            await client.close()
        return stats

    with EsStandin() as es:
        stats = asyncio.run(run(es, es.hold_next(2, path="/_index_template/raced")))
        puts = [r for r in es.requests if r.method == "PUT" and r.path == "/_index_template/raced"]
        assert es.index_template("raced") is not None
    assert len(puts) == 2  # the race did happen: both found it absent
    assert [s["index_setup_failures_total"] for s in stats] == [0, 0]
    # The policy was put by both (a put replaces it with the same), the template by one; the other found it there.
    assert sum(s["index_setup_installed_total"] for s in stats) == 3
