"""Shipping through the real supervisor into the Elasticsearch stand-in: every line once, whatever happens."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

from testkit.dockerd_driver import entry, split_line
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"



def messages(es: EsStandin) -> list[str]:
    return [d["message"] for d in es.docs(INDEX)]


def wait_docs(es: EsStandin, n: int, timeout: float = 20) -> None:
    wait_until(lambda: len(es.docs(INDEX)) >= n, timeout, message=f"{n} documents in Elasticsearch")


def test_lines_become_ecs_documents(plugin: RunningPlugin, es: EsStandin) -> None:
    lg = plugin.logger(name="web-1", config={"hosts": es.url, "compression_level": "1"})
    assert lg.start() == {"_status": 200}
    t = time.time_ns()
    lg.write(entry(b"hello", time_nano=t), entry(b"  indented", source="stderr", time_nano=t + 1))
    wait_docs(es, 2)
    first, second = sorted(es.docs(INDEX), key=lambda d: d["@timestamp"])
    assert first["message"] == "hello" and first["stream"] == "stdout"
    assert second["message"] == "  indented" and second["stream"] == "stderr"
    assert first["container"]["id"] == lg.container_id
    assert first["container"]["name"] == "web-1"
    assert first["@timestamp"].endswith("Z")
    assert es.bulk_requests[0].headers.get("content-encoding") == "gzip"
    lg.stop()


def test_split_line_is_one_document(plugin: RunningPlugin, es: EsStandin) -> None:
    lg = plugin.logger(config={"hosts": es.url})
    lg.start()
    long_line = b"y" * 40_000
    parts = split_line(long_line, time.time_ns())
    lg.write(*parts, entry(b"next"))
    wait_docs(es, 2)
    assert sorted(messages(es), key=len) == ["next", long_line.decode()]
    assert len(parts) == 3
    wait_until(lambda: plugin.stats()["readers"][0].get("partial_chunks_total") == 3, message="3 partial chunks")
    lg.stop()


def test_outage_then_recovery_loses_and_duplicates_nothing(plugin: RunningPlugin, es: EsStandin) -> None:
    lg = plugin.logger(config={"hosts": es.url, "backoff_init": "100ms", "backoff_max": "500ms"})
    lg.start()
    lg.write(*(entry(b"before %d" % i) for i in range(100)))
    wait_docs(es, 100)
    es.down()
    lg.write(*(entry(b"during %d" % i) for i in range(2000)))  # the container is never blocked meanwhile
    wait_until(lambda: plugin.stats()["shipper"]["retried_total"] > 0, 20, message="the shipper to be retrying")

    def held(stats: dict[str, Any]) -> bool:
        """One report: a bulk being retried, documents waiting behind it, all of them this container's backlog."""
        shipper, backlog = stats["shipper"], stats["readers"][0]["shipping"]["backlog_docs"]
        return 0 < shipper["in_flight"] <= 1600 and backlog >= shipper["queued"] + shipper["in_flight"] > 1000

    wait_until(lambda: held(plugin.stats()), 20, message="documents held in the shipper during the outage")
    es.up()
    wait_docs(es, 2100, timeout=60)
    counts = Counter(messages(es))
    assert len(counts) == 2100 and max(counts.values()) == 1

    def drained(stats: dict[str, Any]) -> bool:
        shipper = stats["shipper"]
        return (shipper["queued"], shipper["in_flight"], stats["readers"][0]["shipping"]["backlog_docs"]) == (0, 0, 0)

    wait_until(lambda: drained(plugin.stats()), message="nothing left queued, in flight or unacknowledged")
    lg.stop()


def test_per_item_429_is_retried_and_mapping_errors_are_counted(plugin: RunningPlugin, es: EsStandin) -> None:
    es.item_error(lambda d: d.get("message") == "busy", status=429, count=3)
    es.item_error(lambda d: d.get("message") == "bad", status=400, error_type="document_parsing_exception")
    lg = plugin.logger(config={"hosts": es.url, "backoff_init": "50ms"})
    lg.start()
    lg.write(entry(b"busy"), entry(b"bad"), entry(b"fine"))
    wait_until(lambda: sorted(messages(es)) == ["busy", "fine"], 20, message="busy and fine stored")
    wait_until(lambda: plugin.stats()["shipper"]["failed_total"] == 1, 10, message="the refused document counted")
    (output,) = plugin.stats()["shipper"]["outputs"]
    assert output["failed_by_reason"] == {"400 document_parsing_exception": 1}
    assert "document_parsing_exception" in plugin.log_text()
    lg.stop()


def test_killed_shipper_resumes_without_loss_or_duplicates(plugin: RunningPlugin, es: EsStandin) -> None:
    lg = plugin.logger(config={"hosts": es.url})
    lg.start()
    for round_ in range(5):
        lg.write(*(entry(b"r%d-%d" % (round_, i)) for i in range(500)))
        pid = plugin.stats()["shipper"]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda old=pid: plugin.stats()["shipper"]["pid"] not in (None, old), message="a new shipper")
    wait_docs(es, 2500, timeout=60)
    counts = Counter(messages(es))
    assert len(counts) == 2500 and max(counts.values()) == 1
    lg.stop()


def test_unknown_host_option_is_refused(plugin: RunningPlugin) -> None:
    lg = plugin.logger(config={"hosts": "http://:notaport"})
    assert "hosts" in lg.start()["Err"]


def test_secrets_never_reach_logs_or_stats(plugin: RunningPlugin) -> None:
    with EsStandin(users={"elastic": "s3cr3t-pw"}) as es:
        lg = plugin.logger(config={"hosts": es.url, "user": "elastic", "password": "wrong-s3cr3t"})
        lg.start()
        lg.write(entry(b"x"))
        wait_until(lambda: plugin.stats()["shipper"]["outputs"] and
                   plugin.stats()["shipper"]["outputs"][0]["reachable"] is False, 20, message="a 401")
        text = plugin.log_text() + str(plugin.stats())
        assert "wrong-s3cr3t" not in text
        assert "401" in text
        lg.stop()


def test_bulk_settings_are_per_container_even_with_the_same_hosts(plugin: RunningPlugin, es: EsStandin) -> None:
    slow = plugin.logger(config={"hosts": es.url, "flush_interval": "5s"})
    fast = plugin.logger(config={"hosts": es.url, "flush_interval": "50ms"})
    same = plugin.logger(config={"hosts": es.url, "flush_interval": "50ms"})
    for lg in (slow, fast, same):
        assert lg.start() == {"_status": 200}
    wait_until(lambda: len(plugin.stats()["shipper"]["outputs"]) == 2, message="two bulk outputs")
    for lg in (slow, fast, same):
        lg.stop()


def test_index_and_pipeline_format_strings(plugin: RunningPlugin, es: EsStandin) -> None:
    lg = plugin.logger(name="Api-1", config={"hosts": es.url, "index": "logs-%{[container.name]}-default",
                                            "pipeline": "p-%{+yyyy}"})
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"routed", time_nano=1_700_000_000_000_000_000))
    wait_until(lambda: es.docs("logs-api-1-default"), 20, message="a document in logs-api-1-default")
    (stored,) = es.stored("logs-api-1-default")
    assert stored.pipeline == "p-2023"
    bad = plugin.logger(config={"hosts": es.url, "index": "logs-%{[no.such.field]}-x"})
    assert "index" in bad.start()["Err"]
    lg.stop()


def test_refused_documents_go_to_the_dead_letter_index(plugin: RunningPlugin, es: EsStandin) -> None:
    es.item_error(lambda d: d.get("message") == "unmappable", status=400, error_type="document_parsing_exception")
    lg = plugin.logger(config={"hosts": es.url, "dead_letter_index": "dead-letters"})
    lg.start()
    lg.write(entry(b"unmappable"), entry(b"fine"))
    wait_until(lambda: es.docs("dead-letters"), 20, message="the refused document dead-lettered")
    (dead,) = es.docs("dead-letters")
    assert "unmappable" in dead["original"] and "document_parsing_exception" in dead["error"]["reason"]
    assert messages(es) == ["fine"]
    wait_until(lambda: plugin.stats()["shipper"]["dead_lettered_total"] == 1, message="counted")
    lg.stop()


def test_too_large_requests_are_split(plugin: RunningPlugin) -> None:
    with EsStandin(max_content_length=20_000) as es:
        lg = plugin.logger(config={"hosts": es.url, "compression_level": "0", "flush_interval": "500ms"})
        lg.start()
        lines = [b"%04d " % i + b"z" * 200 for i in range(400)]  # ~120 KB of documents
        lg.write(*(entry(line) for line in lines))
        wait_docs(es, 400, timeout=30)
        # Every line exactly once: a list, not a set, so a document stored twice fails the test.
        assert sorted(messages(es)) == sorted(line.decode() for line in lines)
        assert any(r.status == 413 for r in es.bulk_requests)
        lg.stop()


def test_finite_max_retries_drops_with_a_count(plugin: RunningPlugin, es: EsStandin) -> None:
    es.item_error(lambda d: d.get("message") == "always busy", status=503, error_type="unavailable_shards_exception")
    lg = plugin.logger(config={"hosts": es.url, "max_retries": "2", "backoff_init": "50ms"})
    lg.start()
    lg.write(entry(b"always busy"), entry(b"ok"))
    wait_until(lambda: plugin.stats()["shipper"]["failed_total"] == 1, 20, message="the document given up on")
    assert plugin.stats()["shipper"]["outputs"][0]["failed_by_reason"] == {"retries exhausted (max_retries)": 1}
    assert messages(es) == ["ok"]
    assert "retries exhausted" in plugin.log_text()
    lg.stop()
