"""A bulk that times out in the client is still carried out by Elasticsearch: the retry is answered 409 for every
document, and each line is stored once."""

from __future__ import annotations

from collections import Counter

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin
from tests.shipper.bulk_harness import INDEX, all_finished, make_docs, ship


def test_the_retry_of_a_timed_out_bulk_gets_409s() -> None:
    with EsStandin() as es:
        es.delay_next(2.0, path="_bulk")
        run = ship(es, make_docs(30), all_finished(30), client_timeout=0.5)
        assert run.bulk.counters["duplicates_total"] == 30 and run.bulk.counters["shipped_total"] == 0
        assert run.bulk.counters["request_errors_total"] == 1
        assert es.count(INDEX) == 30 and es.duplicates_rejected == 30


def test_the_plugin_stores_each_line_once_when_a_bulk_times_out(plugin: RunningPlugin) -> None:
    with EsStandin() as es:
        es.delay_next(3.0, path="_bulk")
        lg = plugin.logger(config={"hosts": es.url, "timeout": "1s", "backoff_init": "100ms"})
        assert lg.start() == {"_status": 200}
        lg.write(*(entry(b"line %d" % i) for i in range(100)))
        wait_until(lambda: plugin.stats()["shipper"]["duplicates_total"] == 100, 30,
                   message="the retry answered 409 for all 100 lines")
        messages = Counter(d["message"] for d in es.docs(INDEX))
        assert len(messages) == 100 and max(messages.values()) == 1
        assert plugin.stats()["shipper"]["shipped_total"] == 0
        assert "ConnectionTimeout" in plugin.log_text()
        lg.stop()
