"""The bulk options do what the README says, seen from Elasticsearch's side (the stand-in records every request):
``bulk_max_size`` documents and ``bulk_max_bytes`` bytes per request, ``timeout`` per request, ``backoff_max`` as
the longest wait between attempts."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin, RecordedRequest

INDEX = "logs-docker-default"



def sources(request: RecordedRequest) -> list[bytes]:
    """The document lines of a bulk body (every second line; the others are the actions)."""
    return request.body.splitlines()[1::2]


def assert_each_once(es: EsStandin, lines: list[bytes]) -> None:
    assert Counter(d["message"] for d in es.docs(INDEX)) == Counter(line.decode() for line in lines)


def test_bulk_max_size_caps_the_documents_per_request(plugin: RunningPlugin, es: EsStandin) -> None:
    # A long flush interval: requests leave full, so their size is the option's doing, not the clock's.
    lg = plugin.logger(config={"hosts": es.url, "bulk_max_size": "10", "flush_interval": "2s"})
    assert lg.start() == {"_status": 200}
    lines = [b"sized %03d" % i for i in range(95)]
    lg.write(*(entry(line) for line in lines))
    wait_until(lambda: es.count(INDEX) == 95, 30, message="95 documents")
    sizes = [len(sources(r)) for r in es.bulk_requests]
    assert max(sizes) == 10 and sum(sizes) == 95 and len(sizes) >= 10, sizes
    assert_each_once(es, lines)
    lg.stop()


def test_bulk_max_bytes_caps_the_bytes_per_request(plugin: RunningPlugin, es: EsStandin) -> None:
    limit = 5000
    lg = plugin.logger(config={"hosts": es.url, "bulk_max_bytes": str(limit), "flush_interval": "2s"})
    assert lg.start() == {"_status": 200}
    lines = [b"%03d " % i + b"b" * 200 for i in range(100)]
    lg.write(*(entry(line) for line in lines))
    wait_until(lambda: es.count(INDEX) == 100, 30, message="100 documents")
    doc_bytes = [sum(len(s) for s in sources(r)) for r in es.bulk_requests]
    total = sum(doc_bytes)
    assert total > 10 * limit  # several requests' worth
    # Each request stays under the limit, and is filled up to it (not one document per request).
    assert max(doc_bytes) <= limit and min(doc_bytes[:-1]) > limit // 2, doc_bytes
    assert len(doc_bytes) <= 2 * total // limit + 1
    assert_each_once(es, lines)
    lg.stop()


def test_timeout_gives_up_on_a_request_and_retries(plugin: RunningPlugin, es: EsStandin) -> None:
    es.delay_next(5.0, path="_bulk")
    lg = plugin.logger(config={"hosts": es.url, "timeout": "500ms", "backoff_init": "100ms",
                               "flush_interval": "50ms"})
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"slow at first"))
    wait_until(lambda: len(es.bulk_requests) >= 2, 10, message="a second attempt")
    first, second = es.bulk_requests[:2]
    # Given up at the timeout (0.5 s), then the back-off (0.05-0.15 s): long before the 5 s answer would come.
    gap = second.received - first.received
    assert 0.5 <= gap < 2.5, gap
    wait_until(lambda: es.count(INDEX) == 1, 10, message="the line stored")
    assert_each_once(es, [b"slow at first"])
    assert "ConnectionTimeout" in plugin.log_text()
    lg.stop()


def test_backoff_max_caps_the_wait_between_attempts(plugin: RunningPlugin, es: EsStandin) -> None:
    es.fail_next(503, count=None, path="_bulk")
    lg = plugin.logger(config={"hosts": es.url, "backoff_init": "100ms", "backoff_max": "300ms",
                               "flush_interval": "50ms"})
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"refused a while"))
    # Delays 0.1, 0.2, then 0.3 for ever (each times 0.5-1.5 for jitter); doubling without a cap would take
    # 0.1 + 0.2 + ... + 12.8 = 25 s to get to the 10th attempt.
    wait_until(lambda: len(es.bulk_requests) >= 10, 15, message="10 attempts")
    es.clear_faults()
    times = [r.received for r in es.bulk_requests[:10]]
    gaps = [b - a for a, b in pairwise(times)]
    assert max(gaps) <= 0.3 * 1.5 + 0.3, gaps  # the cap (+ room for a loaded machine)
    assert sum(gaps[-5:]) / 5 >= 0.2, gaps  # and the delay did grow to it from 0.1
    wait_until(lambda: es.count(INDEX) == 1, 10, message="the line stored once Elasticsearch takes it")
    assert_each_once(es, [b"refused a while"])
    lg.stop()
