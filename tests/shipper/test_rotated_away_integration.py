"""Lines that rotation deleted before they were shipped: lost to Elasticsearch, but logged once and counted (README:
"Only lines that rotation (max-size/max-file) deleted before they were shipped are lost, and that is logged and
counted")."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"
# max-size 500 with ~1 KiB lines and ~100-byte batch markers: a file is full after its first line, so every file
# holds exactly one line (after its batch's marker, for the first line of a batch) and files lost = lines lost.
MAX_SIZE = "500"
PAD = b"." * 1000



def reader_stats(plugin: RunningPlugin) -> dict[str, Any]:
    (reader,) = plugin.stats()["readers"]
    return dict(reader)


def settled(plugin: RunningPlugin) -> bool:
    stats = plugin.stats()
    shipper, (reader,) = stats["shipper"], stats["readers"]
    shipping = reader.get("shipping")
    return shipper["queued"] == 0 and shipper["in_flight"] == 0 and bool(shipping) and shipping["backlog_docs"] == 0


def test_lines_rotated_away_before_shipping_are_logged_once_and_counted(plugin: RunningPlugin,
                                                                       es: EsStandin) -> None:
    lg = plugin.logger(config={"hosts": es.url, "max-size": MAX_SIZE, "max-file": "2", "backoff_init": "100ms",
                               "backoff_max": "200ms"})
    assert lg.start() == {"_status": 200}
    shipped = [b"shipped %03d " % i + PAD for i in range(5)]
    lg.write(*(entry(line) for line in shipped))
    # Some of these may rotate away before the shipper's first fetch: they count as lost like any other.
    wait_until(lambda: es.count(INDEX) >= 1 and settled(plugin), 20, message="the first lines in Elasticsearch")

    es.down()
    # Written at once: each batch the local store appends rotates through dozens of one-line files, so the shipper
    # (fetching a file at a time, holding what it fetched until Elasticsearch is back) finds most of them deleted.
    behind = [b"behind %05d " % i + PAD for i in range(300)]
    lg.write(*(entry(line) for line in behind))
    wait_until(lambda: plugin.stats()["localstore"]["records_total"] >= 305, message="every line stored")
    on_disk = [e.line.rstrip(b"\n") for e in plugin.client.read_logs(lg.info)]
    assert on_disk == behind[-2:], "max-file=2 of one line each: the newest two lines"
    assert reader_stats(plugin)["store"]["rotations_total"] >= 300

    es.up()
    wait_until(lambda: set(on_disk) <= {d["message"].encode() for d in es.docs(INDEX)} and settled(plugin), 30,
               message="the shipper to deliver what it has and what is still on disk")
    counts = Counter(d["message"].encode() for d in es.docs(INDEX))
    assert max(counts.values()) == 1 and set(counts) <= set(shipped + behind)
    assert set(on_disk) <= set(counts)
    lost = len(shipped) + len(behind) - len(counts)
    assert lost > 100, "the scenario must lose lines to rotation"
    wait_until(lambda: reader_stats(plugin)["shipping"]["lost_files_total"] == lost, 10,
               message=f"{lost} lost files (one line each) counted")
    # Logged once per loss, by one process: the files the log reports add up to the count, not twice it.
    short = lg.container_id[:12]
    said = [line for line in plugin.log_text().splitlines() if short in line and "rotated files were deleted" in line]
    reported = [int(m.group(1)) for line in said if (m := re.search(r": (\d+) rotated files were deleted", line))]
    assert len(reported) == len(said) and sum(reported) == lost, "\n".join(said)
    lg.stop()
