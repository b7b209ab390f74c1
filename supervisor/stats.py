"""The plugin's figures in one dict: what each child reported, plus psutil's view of every process.

The JSON of ``GET /stats``, the ``stats`` table and ``GET /metrics`` (Prometheus) are all rendered from
``collect()``; numbers stay numbers with their unit in the name, only the CLI formats them.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from supervisor.children import Role

if TYPE_CHECKING:
    from supervisor.arbiter import Service, Supervisor


# USS needs /proc/<pid>/smaps (milliseconds per process), and /stats is served by the loop that answers dockerd:
# each call reads at most USS_BUDGET seconds of it, the processes never read first and then the oldest figures,
# and shows the last figure of the others, so /stats with 1000 containers answers at once (the USS figures fill
# in over the next calls and are refreshed in turn).
USS_BUDGET = 0.05


class ProcessSampler:
    """One psutil.Process per pid, kept between calls: cpu_percent means something only between two samples."""

    def __init__(self) -> None:
        self.procs: dict[int, psutil.Process] = {}
        self.uss: dict[int, tuple[float, float]] = {}  # pid -> (when sampled, bytes)

    def sample(self, pid: int | None) -> dict[str, float]:
        if pid is None:
            return {}
        proc = self.procs.get(pid)
        try:
            if proc is None:
                proc = self.procs[pid] = psutil.Process(pid)
            with proc.oneshot():
                return {"rss_bytes": float(proc.memory_info().rss), "cpu_percent": proc.cpu_percent()}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self.forget(pid)
            return {}

    def add_uss(self, entries: list[dict[str, Any]]) -> None:
        """Set ``uss_bytes`` in each entry (a dict with ``pid``) that has a figure, reading some within the budget."""
        until = time.monotonic() + USS_BUDGET
        known = [e["pid"] for e in entries if e.get("pid") in self.procs]
        for n, pid in enumerate(sorted(known, key=lambda pid: self.uss.get(pid, (0.0, 0.0))[0])):
            if n and time.monotonic() >= until:  # at least one per call: every process gets its turn
                break
            try:
                self.uss[pid] = (time.monotonic(), float(self.procs[pid].memory_full_info().uss))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self.forget(pid)
        for entry in entries:
            if entry.get("pid") in self.uss:
                entry["uss_bytes"] = self.uss[entry["pid"]][1]

    def forget(self, pid: int) -> None:
        self.procs.pop(pid, None)
        self.uss.pop(pid, None)

    def prune(self, alive: set[int]) -> None:
        for pid in [p for p in self.procs if p not in alive]:
            self.forget(pid)


def collect(sup: Supervisor, sampler: ProcessSampler, uss: bool = True) -> dict[str, Any]:
    """Every figure of the plugin (the JSON shape scripts rely on)."""
    now = time.monotonic()
    store = sup.services[Role.LOCALSTORE]
    per_container_store = store.child.per_container if store.child else {}
    shippers = sup.shippers()
    shipping: dict[str, Any] = {}
    for svc in shippers:  # each container is shipped by one of them: their per-container figures never overlap
        shipping.update(svc.child.per_container if svc.child else {})
    store_entry = _service(store, sampler)
    each = [_service(svc, sampler) for svc in shippers]
    readers = []
    for lg in sup.loggers.active.values():
        child = lg.child
        reader = {
            "container_id": lg.container_id,
            "container_name": str(lg.info.get("ContainerName", "")).lstrip("/"),
            "fifo": lg.fifo_name,
            "pid": child.pid if child else None,
            "state": ("stopping" if lg.stopping else "running") if child else
                     "idle" if lg.watching else "restarting",
            "restarts": lg.restarts,
            "lines_lost_in_crashes": lg.lines_lost,
            "lines_total": 0,
            "bytes_total": 0,
            **(child.counters if child else {}),
            "lines_per_s": round(child.rate("lines_total"), 1) if child else 0.0,
            **sampler.sample(child.pid if child else None),
        }
        if lg.container_id in per_container_store:
            reader["store"] = per_container_store[lg.container_id]
        if lg.container_id in shipping:
            reader["shipping"] = shipping[lg.container_id]
        readers.append(reader)
    sampler.prune({r["pid"] for r in readers if r["pid"]} | {s["pid"] for s in [store_entry, *each] if s["pid"]}
                  | {os.getpid()})
    supervisor = {
        "pid": os.getpid(),
        "uptime_s": round(now - sup.started_at, 3),
        "protobuf": protobuf_backend(),
        "restarts": sum(svc.restarts for svc in sup.services.values()) + sum(lg.restarts for lg in
                                                                         sup.loggers.active.values()),
        "hung_killed_total": sup.watchdog.killed_total,
        "read_streams": len(sup.reads.active),
        "read_streams_total": sup.reads.total,
        "read_streams_refused_total": sup.reads.refused_total,
        "housekeeping_errors_total": sup.housekeeping.errors_total,
        **sampler.sample(os.getpid()),
    }
    if uss:
        sampler.add_uss([supervisor, store_entry, *each, *readers])
    services: dict[str, Any] = {"localstore": store_entry,
                                "shipper": each[0] if len(each) == 1 else _sum_shippers(each)}
    if len(each) > 1:
        services["shippers"] = each
    return {"supervisor": supervisor, **services, "readers": readers}


def _service(svc: Service, sampler: ProcessSampler) -> dict[str, Any]:
    child = svc.child
    counters = dict(child.counters) if child else {}
    if svc.role is Role.SHIPPER:
        counters["outputs"] = child.outputs if child else []
        if svc.shard.count > 1:
            counters["index"] = svc.shard.index
    if child is not None and child.outbox is not None:  # control messages waiting for the service to read
        counters["control_queued_bytes"] = child.outbox.queued_bytes
        counters["control_dropped_total"] = child.outbox.dropped_total
    return {"pid": child.pid if child else None, "restarts": svc.restarts, **counters,
            **sampler.sample(child.pid if child else None)}


def _sum_shippers(each: list[dict[str, Any]]) -> dict[str, Any]:
    """With SHIPPERS > 1, ``shipper`` holds every shipper's numbers summed (memory and CPU too: what shipping
    costs), their pids, and their outputs (each tagged with its shipper's index); ``shippers`` holds each one."""
    total: dict[str, Any] = {"pid": None, "pids": [e["pid"] for e in each], "outputs": []}
    for entry in each:
        for key, value in entry.items():
            if key in ("pid", "index") or isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
        total["outputs"] += [{**out, "shipper": entry["index"]} for out in entry["outputs"]]
    return total


def prometheus(data: dict[str, Any]) -> bytes:
    """The same figures in Prometheus' text format: numeric fields of each process become gauges."""
    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}

    def put(name: str, labels: dict[str, str], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        metric = f"elp_{name}"
        gauge = gauges.get(metric)
        if gauge is None:
            gauge = gauges[metric] = Gauge(metric, name.replace("_", " "), sorted(labels), registry=registry)
        (gauge.labels(**labels) if labels else gauge).set(value)

    for role in ("supervisor", "localstore", "shipper"):
        for key, value in data.get(role, {}).items():
            if key != "pid":
                put(f"{role}_{key}", {}, value)
    for shipper in data.get("shippers", []):  # SHIPPERS > 1: elp_shipper_* are the sums, these each one's
        for key, value in shipper.items():
            if key not in ("pid", "index"):
                put(f"shipper_process_{key}", {"shipper": str(shipper["index"])}, value)
    for reader in data.get("readers", []):
        labels = {"container_id": reader["container_id"][:12], "container_name": reader["container_name"]}
        for key, value in reader.items():
            if key not in ("pid", "container_id", "container_name", "fifo", "state"):
                put(f"reader_{key}", labels, value)
    return generate_latest(registry)


def protobuf_backend() -> str:
    from google.protobuf.internal import api_implementation

    return str(api_implementation.Type())
