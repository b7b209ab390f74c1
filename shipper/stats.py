"""The shipper's figures for ``/stats``: totals, one entry per shipping container, one per output."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipper.feed import ContainerFeed
    from shipper.main import ShipperProcess

# Stats show an output's most frequent failure reasons, each cut to a length (Elasticsearch writes the reasons:
# a hostile or buggy one must not grow the reports without bound).
REASONS_SHOWN = 20
REASON_CHARS = 200
ERROR_CHARS = 500
# Per output in stats, besides the above: what a faulty or hostile Elasticsearch made the shipper do.
OUTPUT_COUNTERS = ("bad_answers_total", "bad_items_total", "config_fault_docs_total", "dead_letters_refused_total",
                   "closed_requests_total", "split_total", "internal_errors_total")


def shipper_stats(shipper: ShipperProcess) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Counters, per-container figures and per-output figures, as ``ControlChannel.report`` takes them."""
    totals: dict[str, int] = {}
    outputs = []
    for bulk in shipper.outputs.values():
        for name, value in bulk.counters.items():
            totals[name] = totals.get(name, 0) + value
        outputs.append({"output": bulk.name, "reachable": bulk.reachable, "queued": len(bulk.queue),
                        "in_flight": bulk.in_flight, "last_error": bulk.last_error[:ERROR_CHARS],
                        "request_errors_total": bulk.counters["request_errors_total"],
                        "failed_by_reason": _top_reasons(bulk.failed_reasons), "config_fault": bulk.config_fault,
                        "parked": len(bulk.parked),
                        **{name: bulk.counters[name] for name in OUTPUT_COUNTERS}})
    counters: dict[str, Any] = {
        "queued": sum(len(b.queue) for b in shipper.outputs.values()),
        "in_flight": sum(b.in_flight for b in shipper.outputs.values()),
        "shipped_total": totals.get("shipped_total", 0),
        "duplicates_total": totals.get("duplicates_total", 0),
        "retried_total": totals.get("retried_total", 0),
        "failed_total": totals.get("failed_total", 0),
        "dead_lettered_total": totals.get("dead_lettered_total", 0),
        "bad_messages_total": shipper.bad_messages,
        "housekeeping_errors_total": shipper.housekeeping.errors_total,
        "filtered_out_total": sum(f.dropped_total for f in shipper.feeds.values()),
        **shipper.setups.stats(),
    }
    per_container = {cid: _container_stats(shipper, f) for cid, f in shipper.feeds.items()}
    return counters, per_container, outputs


def _container_stats(shipper: ShipperProcess, feed: ContainerFeed) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "backlog_docs": feed.backlog, "docs_total": feed.docs_total, "joined_total": feed.joined_total,
        "lost_files_total": feed.lost_files, "acked": list(feed.acked) if feed.acked else None}
    processor = feed.processor
    if processor is not None:
        stats.update({"filtered_out_total": feed.dropped_total, "multiline_total": processor.multiline_total,
                      "open_events": len(processor.open_starts), "late_lines_total": processor.late_lines_total,
                      "events_cut_total": processor.span_cut_total})
    problems = shipper.json_problems.get(feed.container_id)
    if problems is not None:
        stats.update({"json_errors_total": problems.decoding_errors, "json_problems_total": problems.other})
    return stats


def _top_reasons(reasons: dict[str, int]) -> dict[str, int]:
    """The most frequent failure reasons, each cut short; the rest summed under "(other reasons)"."""
    ranked = sorted(reasons.items(), key=lambda item: -item[1])
    shown: dict[str, int] = {}
    for reason, count in ranked[:REASONS_SHOWN]:
        key = reason[:REASON_CHARS]
        shown[key] = shown.get(key, 0) + count
    rest = sum(count for _, count in ranked[REASONS_SHOWN:])
    if rest:
        shown["(other reasons)"] = rest
    return shown
