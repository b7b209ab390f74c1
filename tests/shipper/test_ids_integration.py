"""Documents' ids through the real supervisor and the Elasticsearch stand-in: the same id for the same line whatever
restarts, never the same id for another line (localstore/generations.py, shipper/feed.py doc_id)."""

from __future__ import annotations

import os
import signal
from collections import Counter

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"




def messages(es: EsStandin) -> Counter[str]:
    return Counter(d["message"] for d in es.docs(INDEX))


def test_a_container_started_again_after_destroy_ships_every_new_line(destroying_plugin: RunningPlugin,
                                                                     es: EsStandin) -> None:
    # The reproduced loss: its folder deleted on stop, the same container (same id) started again logged lines of
    # the same lengths at the same positions, and Elasticsearch answered 409 to every one of them.
    plugin = destroying_plugin
    first = plugin.logger(config={"hosts": es.url})
    first.start()
    first.write(*(entry(b"first %03d" % i) for i in range(200)))
    wait_until(lambda: es.count(INDEX) >= 200, 20, message="the first run's 200 documents")
    first.stop()
    folder = plugin.data_dir / "containers" / first.container_id
    wait_until(lambda: not folder.exists(), 20, message="the container's folder to be deleted")
    again = FakeLogger(plugin.client, plugin.fifo_dir, container_id=first.container_id, config=first.config)
    again.start()
    again.write(*(entry(b"again %03d" % i) for i in range(200)))
    wait_until(lambda: es.count(INDEX) >= 400, 20, message="the second run's 200 documents too")
    counts = messages(es)
    assert len(counts) == 400 and max(counts.values()) == 1
    assert es.duplicates_rejected == 0
    again.stop()


def test_a_replay_after_the_shipper_was_killed_is_answered_409(plugin: RunningPlugin, es: EsStandin) -> None:
    # Elasticsearch stores a bulk whose answer the shipper never reads (stopped, then killed): the new shipper
    # sends those lines again from the store's cursor, and they must carry the same ids (a process id or a
    # per-process counter in doc_id would store them twice).
    lg = plugin.logger(config={"hosts": es.url})
    lg.start()
    hold = es.hold_next(None, path="_bulk")
    lg.write(*(entry(b"line %03d" % i) for i in range(300)))
    wait_until(lambda: es.held_count() >= 1, 20, message="a bulk request held in Elasticsearch")
    pid = plugin.stats()["shipper"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        es.clear_faults()
        hold.release()
        wait_until(lambda: es.held_count() == 0 and all(r.status is not None for r in es.bulk_requests), 10,
                   message="the held requests to be answered")
        stored_unacknowledged = es.count(INDEX)
        assert stored_unacknowledged > 0
    finally:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: plugin.stats()["shipper"]["pid"] not in (None, pid), 20, message="a new shipper")
    # Done when every line is there and the replay was answered, or as soon as a line is there twice.
    wait_until(lambda: es.count(INDEX) > 300 or (es.count(INDEX) == 300 and
                                                 es.duplicates_rejected >= stored_unacknowledged), 30,
               message="every line in Elasticsearch and the replay answered")
    counts = messages(es)
    assert len(counts) == 300 and max(counts.values()) == 1
    assert es.duplicates_rejected == stored_unacknowledged  # the replay got 409 for exactly what was there
    assert {item["create"]["status"] for item in es.failed_items} == {409}
    lg.stop()
