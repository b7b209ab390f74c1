"""R11 a hostile Elasticsearch: answers that are not what Elasticsearch sends, while a container logs.

Each round injects one bad answer per kind (items with a string, missing, list or out-of-range ``status``, a
200 kB error type, items out of order, too few or too many items, a body that is not JSON, 300 MB answers streamed
and declared), each into the next bulk request, which the stand-in still carries out. Measured: shipper crashes
(0), the shipper's peak RSS (bounded: answers are read up to 32 MiB), every bad answer counted in /stats, and every
line stored exactly once (a line refused with the 200 kB type is dead-lettered, as a refusal is).
Runs the real supervisor without Docker (Docker adds nothing to what Elasticsearch answers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin, JsonObj
from tests.reliability.conftest import FigureTable, scale

INDEX = "logs-docker-default"
ROUNDS = scale(1, 5)
LINES_PER_CASE = 50
HUGE = 300 << 20
RSS_GOAL = 200 << 20


def _items(change: Callable[[JsonObj], Any]) -> Callable[[JsonObj], JsonObj]:
    return lambda answer: {**answer, "items": [change(item) for item in answer["items"]]}


def _status(value: Any) -> Callable[[JsonObj], JsonObj]:
    return _items(lambda item: {"create": {**item["create"], "status": value}})


# name -> how to inject it into the next bulk request
CASES: dict[str, Callable[[EsStandin, int], object]] = {
    "status a string": lambda es, r: es.tamper_next(_status("201")),
    "no status": lambda es, r: es.tamper_next(_items(lambda i: {"create": {
        k: v for k, v in i["create"].items() if k != "status"}})),
    "status a list": lambda es, r: es.tamper_next(_status([201])),
    "status out of range": lambda es, r: es.tamper_next(_status(-1)),
    "200 kB error type": lambda es, r: es.item_error(lambda d: d.get("message") == f"r{r} 200 kB error type 0",
                                                     status=400, error_type="t" * 200_000, count=1),
    "items out of order": lambda es, r: es.tamper_next(lambda a: {**a, "items": a["items"][::-1]}),
    "too few items": lambda es, r: es.tamper_next(lambda a: {**a, "items": a["items"][1:]}),
    "too many items": lambda es, r: es.tamper_next(lambda a: {**a, "items": a["items"] * 2}),
    "not JSON": lambda es, r: es.tamper_next(lambda a: b"\x00\xff<html>oops"),
    "300 MB answer, streamed": lambda es, r: es.huge_answer_next(HUGE),
    "300 MB answer, declared": lambda es, r: es.huge_answer_next(HUGE, declared=True),
}
COUNTERS = ("bad_answers_total", "bad_items_total", "failed_total")


def _high_water_mark(pid: int) -> float:
    """Peak RSS of a process over its life (VmHWM in /proc/<pid>/status), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def test_r11_hostile_elasticsearch(plugin: RunningPlugin, figures: FigureTable) -> None:
    with EsStandin() as es:
        lg = plugin.logger(config={"hosts": es.url, "flush_interval": "100ms", "backoff_init": "50ms",
                                   "backoff_max": "500ms", "dead_letter_index": "dead-letters"})
        assert lg.start() == {"_status": 200}
        peak_rss = 0.0
        counted = injected = 0
        sent: list[str] = []

        def shipper() -> dict[str, Any]:
            nonlocal peak_rss
            stats: dict[str, Any] = plugin.stats()["shipper"]
            peak_rss = max(peak_rss, float(stats.get("rss_bytes") or 0))
            return stats

        def bad_counters() -> int:
            stats = shipper()
            outputs = stats.get("outputs") or [{}]
            return sum(int(outputs[0].get(name, stats.get(name, 0)) or 0) for name in COUNTERS)

        baseline_pid = None
        for round_ in range(ROUNDS):
            for name, inject in CASES.items():
                before = bad_counters()
                inject(es, round_)
                injected += 1
                lines = [f"r{round_} {name} {i}" for i in range(LINES_PER_CASE)]
                sent += lines
                lg.write(*(entry(line.encode()) for line in lines))
                expected = len(sent)
                wait_until(lambda: not es.pending_faults() and es.count() >= expected, 60,  # noqa: B023
                           message=f"'{name}' to be answered and every line so far stored")
                wait_until(lambda: bad_counters() > before, 10, message=f"'{name}' to be counted")  # noqa: B023
                counted += 1
                pid = shipper()["pid"]
                baseline_pid = baseline_pid or pid
        stats = shipper()
        crashes = stats["restarts"] + (stats["pid"] != baseline_pid)
        peak_rss = max(peak_rss, _high_water_mark(stats["pid"]))  # the kernel's peak: no momentary peak missed
        stored = Counter(d["message"] for d in es.docs(INDEX))
        dead = [d["original"] for d in es.docs("dead-letters")]
        lost = sum(1 for line in sent if line not in stored and not any(f'"{line}"' in o for o in dead))
        duplicates = sum(n - 1 for n in stored.values())
        lg.stop()

    figures.add("R11", f"hostile ES: bad answers injected ({len(CASES)} kinds x {ROUNDS} rounds), shipper crashes",
                crashes, "0", crashes == 0)
    figures.add("R11", "hostile ES: bad answers counted in /stats ÷ injected", f"{counted} / {injected}", "equal",
                counted == injected)
    figures.add("R11", "hostile ES: shipper peak RSS (VmHWM; 300 MB answers among them)", f"{peak_rss / 2**20:.0f} MiB",
                f"< {RSS_GOAL >> 20} MiB", peak_rss < RSS_GOAL)
    figures.add("R11", f"hostile ES: lines lost / duplicated of {len(sent)}", f"{lost} / {duplicates}", "0 / 0",
                lost == 0 and duplicates == 0)
    assert crashes == 0
    assert counted == injected
    assert peak_rss < RSS_GOAL, f"shipper RSS peaked at {peak_rss / 2**20:.0f} MiB"
    assert lost == 0 and duplicates == 0
