"""proto/framing.py: walking stored records ([N][entry][N]) and telling markers from lines, for every reader of the
stored files (ReadLogs, the fetch server, the shipper's feed, crash recovery, rotation)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proto.entry_pb2 import LogEntry
from proto.framing import (
    HEADER,
    HEADER_SIZE,
    MAX_FRAME,
    RECORD_OVERHEAD,
    encode_record,
    generation_record,
    is_marker,
    is_marker_entry,
    marker_record,
    record_boundary_after,
    record_spans,
    record_spans_back,
    whole_records_end,
)


def line(text: bytes, source: str = "stdout") -> bytes:
    return encode_record(LogEntry(source=source, time_nano=1, line=text).SerializeToString())


def ends(records: list[bytes]) -> list[int]:
    out, at = [], 0
    for r in records:
        at += len(r)
        out.append(at)
    return out


RECORDS = [line(b"a\n"), marker_record("fifo", 7), line(b"b" * 300 + b"\n"), generation_record(5, 3), line(b"")]


def test_record_spans_gives_each_whole_record_and_its_body() -> None:
    data = b"".join(RECORDS)
    spans = list(record_spans(data))
    assert [end for _, end in spans] == ends(RECORDS)
    assert [data[s:e] for s, e in spans] == RECORDS
    assert LogEntry.FromString(data[spans[2][0] + HEADER_SIZE : spans[2][1] - HEADER_SIZE]).line.startswith(b"bbb")


def test_record_spans_stops_before_a_cut_record_and_starts_where_asked() -> None:
    data = b"".join(RECORDS)
    cut = data[:-3]
    assert [end for _, end in record_spans(cut)] == ends(RECORDS)[:-1]
    assert whole_records_end(cut) == ends(RECORDS)[-2]
    assert next(record_spans(data, ends(RECORDS)[2])) == (ends(RECORDS)[2], ends(RECORDS)[3])
    assert whole_records_end(data[: RECORD_OVERHEAD - 1]) == 0


@given(st.lists(st.binary(max_size=40), max_size=20), st.integers(min_value=0, max_value=8))
def test_whole_records_end_is_where_record_spans_ends(lines: list[bytes], cut: int) -> None:
    data = b"".join(line(text) for text in lines)
    data = data[: max(0, len(data) - cut)]
    assert whole_records_end(data) == max((end for _, end in record_spans(data)), default=0)


def test_record_spans_back_walks_newest_first_and_stops_at_a_corrupt_length() -> None:
    data = b"".join(RECORDS)
    assert [end for _, end in record_spans_back(data, len(data))] == ends(RECORDS)[::-1]
    # A trailing length that claims more than MAX_FRAME, or more than there is before it, ends the walk.
    bad = HEADER.pack(MAX_FRAME + 1)
    assert list(record_spans_back(data + bad + bad, len(data) + 2 * HEADER_SIZE)) == []
    # The first record cut at the start of the data (a block read from the middle of a file): not yielded.
    assert [end + 5 for _, end in record_spans_back(data[5:], len(data) - 5)] == ends(RECORDS)[:0:-1]


def test_record_boundary_after() -> None:
    data = b"".join(RECORDS)
    marks = ends(RECORDS)
    assert record_boundary_after(data, 1) == marks[0]
    assert record_boundary_after(data, marks[0]) == marks[0]
    assert record_boundary_after(data, marks[0] + 1) == marks[1]
    assert record_boundary_after(data, len(data) + 5) == len(data)


def test_markers_are_recognised_one_way_decoded_or_not() -> None:
    for record, marker in [(marker_record("fifo", 7), True), (generation_record(5, 3), True),
                           (line(b"a\n"), False), (line(b"elp:fifo:7"), False)]:
        body = record[HEADER_SIZE:-HEADER_SIZE]
        assert is_marker(body) is marker
        assert is_marker_entry(LogEntry.FromString(body)) is marker
    # A line whose partial id looks like a marker's still has a source: a line.
    entry = LogEntry(source="stdout", line=b"x")
    entry.partial_log_metadata.id = "elp:fifo:7"
    assert not is_marker_entry(entry)
    assert not is_marker(entry.SerializeToString())
