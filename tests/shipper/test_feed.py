"""ContainerFeed: document ids (deterministic per position, distinct otherwise, short), split lines joined per
stream, and acknowledgements that never pass a line Elasticsearch may lack."""

from __future__ import annotations

import re

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.entry_pb2 import LogEntry
from proto.framing import Position, encode_record, marker_record
from proto.messages import Records
from shipper.feed import MAX_GROUP_SPAN, MAX_OPEN_GROUPS, ContainerFeed, PendingDoc, doc_id, id_prefix

A, B = "a" * 64, "b" * 64


def test_the_same_line_gets_the_same_id_in_every_process() -> None:
    assert doc_id(id_prefix(A), (3, 1234)) == doc_id(id_prefix(A), (3, 1234))


def test_positions_and_containers_get_distinct_ids() -> None:
    ids = {doc_id(id_prefix(c), (g, o)) for c in (A, B) for g in (0, 1, 16, 17) for o in (0, 1, 0x10, 0x11, 2**40)}
    assert len(ids) == 2 * 4 * 5


def test_ids_are_short_and_url_safe() -> None:
    ident = doc_id(id_prefix(A), (2**31, 2**62))
    assert len(ident) <= 64 and re.fullmatch(r"[A-Za-z0-9_\-.]+", ident)


# ---------------------------------------------------------------------------------------------------- split lines


START = (0, 0)  # where the records of these tests start: an acknowledgement there is no progress


def _encode(time_nano: int, source: str, message: bytes, truncated: bool) -> tuple[str, str | None, bytes]:
    return "idx", None, orjson.dumps({"stream": source, "message": message.decode(), "truncated": truncated})


def _record(line: bytes, source: str = "stdout", partial_id: str = "", last: bool = False) -> bytes:
    """A record as the reader stores it: complete lines and last parts end with "\\n"."""
    e = LogEntry(source=source, time_nano=1, line=line)
    if partial_id:
        e.partial = True
        e.partial_log_metadata.id = partial_id
        e.partial_log_metadata.last = last
    if not partial_id or last:
        e.line += b"\n"
    return encode_record(e.SerializeToString())


def _feed_all(feed: ContainerFeed, records: list[bytes], stopped: bool = False) -> tuple[list[PendingDoc],
                                                                                          list[Position]]:
    """Feed ``records`` (from offset 0); the documents made and the start position of each record."""
    data = b"".join(records)
    starts, at = [], 0
    for r in records:
        starts.append((0, at))
        at += len(r)
    docs = feed.on_records(Records(A, 0, 0, 0, len(data), data, 0, stopped))
    return docs, starts


def _message(doc: PendingDoc) -> tuple[str, str]:
    body = orjson.loads(doc.body)
    return body["stream"], body["message"]


def test_interleaved_split_lines_join_with_their_own_stream() -> None:
    feed = ContainerFeed(A, _encode)
    docs, _ = _feed_all(feed, [
        _record(b"out-1.", "stdout", "p-out"),
        _record(b"err-1.", "stderr", "p-err"),
        _record(b"out-2", "stdout", "p-out", last=True),
        _record(b"err-2", "stderr", "p-err", last=True),
    ])
    assert sorted(map(_message, docs)) == [("stderr", "err-1.err-2"), ("stdout", "out-1.out-2")]
    assert feed.joined_total == 2


def test_a_new_partial_id_on_a_stream_closes_the_unfinished_line() -> None:
    feed = ContainerFeed(A, _encode)
    docs, _ = _feed_all(feed, [
        _record(b"lost-its-end.", "stdout", "first"),
        _record(b"new-1.", "stdout", "second"),
        _record(b"new-2", "stdout", "second", last=True),
    ])
    assert list(map(_message, docs)) == [("stdout", "lost-its-end."), ("stdout", "new-1.new-2")]


def test_the_ack_never_passes_the_start_of_an_open_split_line() -> None:
    feed = ContainerFeed(A, _encode)
    docs, _ = _feed_all(feed, [
        _record(b"part-1.", "stdout", "p"),
        _record(b"a complete stderr line", "stderr"),
    ])
    (complete,) = docs
    assert (feed.done(complete.end) or START) <= START  # finished, but the open line before it is not
    offset = len(_record(b"part-1.", "stdout", "p")) + len(_record(b"a complete stderr line", "stderr"))
    last = _record(b"part-2", "stdout", "p", last=True)
    (joined,) = feed.on_records(Records(A, 0, offset, 0, offset + len(last), last, 0, False))
    assert _message(joined) == ("stdout", "part-1.part-2")
    assert feed.done(joined.end) == joined.end == (0, offset + len(last))


def test_the_ack_waits_for_an_interleaved_line_that_started_earlier() -> None:
    feed = ContainerFeed(A, _encode)
    docs, _ = _feed_all(feed, [
        _record(b"a1.", "stdout", "a"),  # line A opens
        _record(b"b1.", "stderr", "b"),  # line B opens...
        _record(b"b2", "stderr", "b", last=True),  # ...and ends
        _record(b"a2", "stdout", "a", last=True),  # A ends
    ])
    doc_b, doc_a = docs
    assert _message(doc_a) == ("stdout", "a1.a2") and _message(doc_b) == ("stderr", "b1.b2")
    assert (feed.done(doc_b.end) or START) <= START  # A started first and is not done
    assert feed.done(doc_a.end) == doc_a.end  # everything is done, up to A's end (the furthest record)


def test_an_ack_stops_at_the_start_of_a_later_unfinished_line() -> None:
    feed = ContainerFeed(A, _encode)
    records = [
        _record(b"a1.", "stdout", "a"),  # 0: line A opens
        _record(b"b1.", "stderr", "b"),  # 1: line B opens
        _record(b"a2", "stdout", "a", last=True),  # 2: A ends
    ]
    docs, starts = _feed_all(feed, records)
    (doc_a,) = docs
    # A is done and ends after B's start; B is still open: the ack may not pass B's first part, nor stop there,
    # inside A (a restart from there would send A's last part again as a document of its own).
    assert feed.done(doc_a.end) == starts[0]
    tail = _record(b"b2", "stderr", "b", last=True)
    offset = sum(map(len, records))
    (doc_b,) = feed.on_records(Records(A, 0, offset, 0, offset + len(tail), tail, 0, False))
    assert _message(doc_b) == ("stderr", "b1.b2")
    assert feed.done(doc_b.end) == (0, offset + len(tail))


def test_a_restart_from_the_ack_gets_every_part_of_the_open_line() -> None:
    """The lost-first-part bug: a complete line between two parts moved the ack past the line's start."""
    records = [
        _record(b"x" * 100, "stdout", "p"),
        _record(b"complete", "stderr"),
        _record(b"y" * 10, "stdout", "p", last=True),
    ]
    feed = ContainerFeed(A, _encode)
    first = records[0] + records[1]
    (complete,) = feed.on_records(Records(A, 0, 0, 0, len(first), first, 0, False))
    acked = feed.done(complete.end) or (0, 0)  # then the shipper restarts, before the line's last part
    data = b"".join(records)
    replay = ContainerFeed(A, _encode)
    docs = replay.on_records(Records(A, acked[0], acked[1], 0, len(data), data[acked[1]:], 0, False))
    assert ("stdout", "x" * 100 + "y" * 10) in list(map(_message, docs))


def test_markers_and_undecodable_records_inside_an_open_line_do_not_move_the_ack() -> None:
    feed = ContainerFeed(A, _encode)
    records = [
        _record(b"a1.", "stdout", "a"),
        marker_record("fifo", 7),
        encode_record(b"\xff\xff\xff"),
        _record(b"a2", "stdout", "a", last=True),
    ]
    docs, _ = _feed_all(feed, records)
    assert (feed.advance() or START) <= START and feed.undecodable == 1
    (doc,) = docs
    assert feed.done(doc.end) == (0, sum(map(len, records)))


def test_a_line_whose_end_never_comes_does_not_hold_shipping_for_ever() -> None:
    feed = ContainerFeed(A, _encode)
    records = [_record(b"open.", "stdout", "forever")] + [_record(b"e%d" % i, "stderr")
                                                           for i in range(MAX_GROUP_SPAN)]
    docs, _ = _feed_all(feed, records)
    assert feed.groups_cut == 1 and not feed.group
    assert ("stdout", "open.") in list(map(_message, docs))
    for doc in docs:
        feed.done(doc.end)
    assert feed.acked == (0, sum(map(len, records)))


def test_stopped_container_flushes_each_open_stream() -> None:
    feed = ContainerFeed(A, _encode)
    records = [_record(b"out.", "stdout", "o"), _record(b"err.", "stderr", "e")]
    docs, _ = _feed_all(feed, records, stopped=True)
    assert sorted(map(_message, docs)) == [("stderr", "err."), ("stdout", "out.")]
    for doc in docs:
        feed.done(doc.end)
    assert feed.acked == (0, sum(map(len, records))) and not feed.backlog


def test_open_split_lines_are_bounded_whatever_the_sources() -> None:
    """Bad input may carry any source name: at most MAX_OPEN_GROUPS lines are held open, the oldest goes first."""
    feed = ContainerFeed(A, _encode)
    records = [_record(b"part of %d." % i, f"src-{i}", f"p{i}") for i in range(MAX_OPEN_GROUPS + 2)]
    docs, _ = _feed_all(feed, records)
    assert len(feed.groups) == MAX_OPEN_GROUPS and feed.groups_cut == 2
    assert list(map(_message, docs)) == [("src-0", "part of 0."), ("src-1", "part of 1.")]
    for doc in docs:
        feed.done(doc.end)
    assert feed.acked == (0, len(records[0]) + len(records[1]))  # up to the oldest line still open


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_ack_never_passes_a_line_not_in_elasticsearch(data: st.DataObject) -> None:
    """Random interleavings of split and complete lines on two streams and markers, documents finished in random
    order: every record before an acknowledged position is a marker or in a finished document (a part of a line
    still open is in none: it must never be passed)."""
    records: list[bytes] = []
    markers: set[int] = set()
    open_ids: dict[str, str] = {}
    for n in range(data.draw(st.integers(1, 40))):
        source = data.draw(st.sampled_from(["stdout", "stderr"]))
        kind = data.draw(st.sampled_from(["complete", "part", "last", "marker"]))
        if kind == "marker":
            markers.add(n)
            records.append(marker_record("fifo", n))
        elif kind == "complete" and source not in open_ids:
            records.append(_record(b"r%d." % n, source))
        else:
            pid = open_ids.setdefault(source, f"{source}-{n}")
            records.append(_record(b"r%d." % n, source, pid, last=kind == "last"))
            if kind == "last":
                del open_ids[source]
    feed = ContainerFeed(A, _encode)
    docs, starts = _feed_all(feed, records, stopped=data.draw(st.booleans()))
    ends = [start[1] + len(record) for start, record in zip(starts, records, strict=True)]
    finished: set[int] = set(markers)  # record numbers Elasticsearch has, or that make no document
    for doc in [None, *data.draw(st.permutations(docs))]:  # None: the shipper's advance() after the records
        if doc is not None:
            finished.update(int(n) for n in re.findall(r"r(\d+)\.", _message(doc)[1]))
        acked = feed.done(doc.end) if doc is not None else feed.advance()
        passed = [n for n, end in enumerate(ends) if acked is not None and end <= acked[1]]
        assert set(passed) <= finished, f"ack {acked} passes records {sorted(set(passed) - finished)}"
    if feed.stopped:
        assert feed.acked == (0, ends[-1])  # everything done: acknowledged to the end
