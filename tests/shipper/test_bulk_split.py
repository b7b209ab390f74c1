"""Too large for the server: a 413, or the connection dropped while the body is still being sent (a server or proxy
that does not answer 413). The request is split until it passes, with gzip on; an outage is not mistaken for it."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin
from tests.shipper.bulk_harness import INDEX, all_finished, make_docs, ship

LIMIT = 20_000


def random_text(i: int) -> str:
    return f"{i:04d} " + os.urandom(100).hex()  # gzip cannot shrink it much: the wire size is over the limit too


@pytest.mark.parametrize("payload", ["incompressible", "compressible"])
@pytest.mark.parametrize("too_large", ["close", "413"])
def test_too_large_bodies_are_split_with_gzip_on(too_large: str, payload: str) -> None:
    text = random_text if payload == "incompressible" else (lambda i: f"{i:04d} " + "z" * 200)
    with EsStandin(max_content_length=LIMIT, too_large=too_large) as es:
        run = ship(es, make_docs(400, text), all_finished(400), compression_level=1, bulk_max_size=400)
        messages = Counter(d["message"] for d in es.docs(INDEX))
        assert len(messages) == 400 and max(messages.values()) == 1
        assert run.bulk.counters["split_total"] > 0 and run.bulk.counters["failed_total"] == 0
        if too_large == "close":
            assert run.bulk.counters["closed_requests_total"] > 0
            assert all(r.status is None for r in es.bulk_requests if len(r.body) > LIMIT)


def test_connections_reset_by_a_server_that_answers_nothing_are_not_split() -> None:
    with EsStandin() as es:
        es.reset_next(20)  # every request, the probe too: an outage, not a size limit
        run = ship(es, make_docs(50), all_finished(50))
        assert run.bulk.counters["split_total"] == 0 and run.bulk.counters["closed_requests_total"] == 0
        assert es.count(INDEX) == 50


def test_one_document_too_large_waits_and_says_so() -> None:
    with EsStandin(max_content_length=LIMIT, too_large="close") as es:
        docs = make_docs(3, lambda i: ("x" if i == 1 else "") + os.urandom(LIMIT if i == 1 else 10).hex())
        run = ship(es, docs, lambda r: "closed the connection while receiving one document" in r.bulk.last_error
                   and len(r.finished) == 2 and r.bulk.counters["retried_total"] >= 3)
        assert es.count(INDEX) == 2 and run.bulk.counters["failed_total"] == 0 and run.bulk.in_flight == 1


def test_the_plugin_splits_requests_the_server_drops(plugin: RunningPlugin) -> None:
    with EsStandin(max_content_length=LIMIT, too_large="close") as es:
        lg = plugin.logger(config={"hosts": es.url, "flush_interval": "500ms"})  # gzip level 1 by default
        assert lg.start() == {"_status": 200}
        lg.write(*(entry(random_text(i).encode()) for i in range(400)))
        wait_until(lambda: es.count(INDEX) >= 400, 30, message="400 documents")
        messages = Counter(d["message"] for d in es.docs(INDEX))
        assert len(messages) == 400 and max(messages.values()) == 1
        assert es.bulk_requests[0].headers.get("content-encoding") == "gzip"
        assert any(r.status is None for r in es.bulk_requests)
        lg.stop()
