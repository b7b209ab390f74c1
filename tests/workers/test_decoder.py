"""Unit tests for workers/decoder.py (FrameDecoder)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.entry_pb2 import LogEntry, PartialLogEntryMetadata
from proto.framing import HEADER, HEADER_SIZE, encode_frame
from workers.decoder import FrameDecoder


def records(out: bytes) -> list[LogEntry]:
    """Parse ``[N][LogEntry][N]`` records, checking both lengths agree and nothing is left over."""
    entries = []
    pos = 0
    while pos < len(out):
        (n,) = HEADER.unpack_from(out, pos)
        (n2,) = HEADER.unpack_from(out, pos + HEADER_SIZE + n)
        assert n == n2, f"record at {pos}: leading length {n} != trailing length {n2}"
        entries.append(LogEntry.FromString(out[pos + HEADER_SIZE : pos + HEADER_SIZE + n]))
        pos += n + 2 * HEADER_SIZE
    assert pos == len(out)
    return entries


def partial(line: bytes, last: bool, ordinal: int, t: int = 5) -> LogEntry:
    return LogEntry(
        source="stdout",
        time_nano=t,
        line=line,
        partial=True,
        partial_log_metadata=PartialLogEntryMetadata(last=last, id="c" * 64, ordinal=ordinal),
    )


def test_complete_lines_get_a_newline() -> None:
    entries = [
        LogEntry(source="stdout", time_nano=1700000000123456789, line=b"hello"),
        LogEntry(source="stderr", time_nano=2, line=b""),
        LogEntry(source="stdout", time_nano=3, line=b"tty line\r"),
    ]
    decoder = FrameDecoder()
    out = bytearray()
    assert decoder.feed(b"".join(encode_frame(e) for e in entries), out) == 3
    stored = records(bytes(out))
    assert [e.line for e in stored] == [b"hello\n", b"\n", b"tty line\r\n"]
    assert [e.source for e in stored] == ["stdout", "stderr", "stdout"]
    assert [e.time_nano for e in stored] == [1700000000123456789, 2, 3]
    assert not any(e.partial for e in stored)


def test_partial_chunks_keep_no_newline_except_the_last() -> None:
    chunks = [partial(b"a" * 10, False, 1), partial(b"b" * 10, False, 2), partial(b"end", True, 3)]
    decoder = FrameDecoder()
    out = bytearray()
    decoder.feed(b"".join(encode_frame(e) for e in chunks), out)
    stored = records(bytes(out))
    assert [e.line for e in stored] == [b"a" * 10, b"b" * 10, b"end\n"]
    # Everything else of the chunk is kept as it was.
    assert [e.partial_log_metadata.ordinal for e in stored] == [1, 2, 3]
    assert [e.partial_log_metadata.last for e in stored] == [False, False, True]
    assert all(e.partial and e.partial_log_metadata.id == "c" * 64 for e in stored)
    assert decoder.counters.partial_chunks == 3
    assert decoder.counters.lines == 3


def test_partial_without_metadata_keeps_no_newline() -> None:
    """Pre-19.03 dockerd sent partial=true with empty metadata."""
    decoder = FrameDecoder()
    out = bytearray()
    decoder.feed(encode_frame(LogEntry(source="stdout", time_nano=1, line=b"x", partial=True)), out)
    assert [e.line for e in records(bytes(out))] == [b"x"]
    assert decoder.counters.partial_chunks == 1


def test_record_layout_and_appending_to_existing_buffer() -> None:
    entry = LogEntry(source="stdout", time_nano=9, line=b"abc")
    out = bytearray(b"PREFIX")
    FrameDecoder().feed(encode_frame(entry), out)
    assert out[:6] == b"PREFIX"
    record = bytes(out[6:])
    body = LogEntry(source="stdout", time_nano=9, line=b"abc\n").SerializeToString()
    assert record == HEADER.pack(len(body)) + body + HEADER.pack(len(body))


@pytest.mark.parametrize("bad_body", [b"\x0a\x05ab", b"\x0a\x02\xff\xfe", b"\xff\xff\xff"], ids=str)
def test_undecodable_frames_are_counted_and_skipped(bad_body: bytes) -> None:
    good = [LogEntry(source="stdout", time_nano=i, line=b"ok%d" % i) for i in range(2)]
    stream = encode_frame(good[0]) + HEADER.pack(len(bad_body)) + bad_body + encode_frame(good[1])
    decoder = FrameDecoder()
    out = bytearray()
    assert decoder.feed(stream, out) == 2
    assert [e.line for e in records(bytes(out))] == [b"ok0\n", b"ok1\n"]
    assert decoder.counters.undecodable_frames == 1
    assert decoder.discarded_frames == 1
    assert decoder.counters.lines == 2


def test_oversized_frames_count_as_discarded() -> None:
    decoder = FrameDecoder()
    out = bytearray()
    good = encode_frame(LogEntry(source="stdout", time_nano=1, line=b"x"))
    assert decoder.feed(b"\xff\xff\xff\xff" + b"\xee" * 10 + good, out) == 1
    assert decoder.discarded_frames == 1
    assert decoder.discarded_bytes == 14


def test_counters_over_several_chunks() -> None:
    entries = [LogEntry(source="stdout", time_nano=i, line=b"l" * i) for i in range(5)]
    entries.append(partial(b"p", False, 1))
    stream = b"".join(encode_frame(e) for e in entries)
    chunks = [stream[:7], stream[7:8], stream[8:50], stream[50:]]
    decoder = FrameDecoder()
    out = bytearray()
    total = sum(decoder.feed(c, out) for c in chunks)
    assert total == 6
    assert decoder.counters.lines == 6
    assert decoder.counters.bytes == len(stream)
    assert decoder.counters.partial_chunks == 1
    assert decoder.counters.undecodable_frames == 0
    assert len(records(bytes(out))) == 6


def test_finish_reports_truncated_trailing_frame() -> None:
    frame = encode_frame(LogEntry(source="stdout", time_nano=1, line=b"truncated"))
    decoder = FrameDecoder()
    out = bytearray()
    assert decoder.feed(frame + frame[:-4], out) == 1
    assert decoder.finish() == len(frame) - 4
    assert decoder.discarded_bytes == len(frame) - 4
    assert len(records(bytes(out))) == 1


def test_finish_after_clean_end_is_zero() -> None:
    decoder = FrameDecoder()
    out = bytearray()
    decoder.feed(encode_frame(LogEntry(source="stdout", time_nano=1, line=b"x")), out)
    assert decoder.finish() == 0
    assert decoder.discarded_bytes == 0


@st.composite
def entries(draw: st.DrawFn) -> LogEntry:
    entry = LogEntry(
        source=draw(st.sampled_from(["stdout", "stderr"])),
        time_nano=draw(st.integers(min_value=0, max_value=2**62)),
        line=draw(st.binary(max_size=100)),
    )
    if draw(st.booleans()):
        entry.partial = True
        entry.partial_log_metadata.last = draw(st.booleans())
        entry.partial_log_metadata.ordinal = draw(st.integers(min_value=1, max_value=100))
    return entry


@settings(max_examples=150, deadline=None)
@given(items=st.lists(entries(), max_size=10), points=st.lists(st.integers(min_value=0), max_size=10))
def test_stored_records_for_any_chunking(items: list[LogEntry], points: list[int]) -> None:
    stream = b"".join(encode_frame(e) for e in items)
    bounds = [0, *sorted(p % (len(stream) + 1) for p in points), len(stream)]
    decoder = FrameDecoder()
    out = bytearray()
    for a, b in itertools.pairwise(bounds):
        decoder.feed(stream[a:b], out)
    stored = records(bytes(out))
    assert len(stored) == len(items)
    for original, kept in zip(items, stored, strict=True):
        complete = not original.partial or original.partial_log_metadata.last
        assert kept.line == original.line + (b"\n" if complete else b"")
        assert (kept.source, kept.time_nano, kept.partial) == (
            original.source, original.time_nano, original.partial
        )
    assert decoder.counters.lines == len(items)
    assert decoder.counters.bytes == len(stream)
    assert decoder.counters.partial_chunks == sum(e.partial for e in items)
    assert decoder.finish() == 0


# --- the fast path (dockerd's usual layout: a complete line, last in the body) must store what decoding would --------


def reference_record(body: bytes) -> bytes:
    """The record FrameDecoder stores for ``body``, made the slow way: decode, add the newline, encode."""
    entry = LogEntry.FromString(body)
    if not entry.partial or entry.partial_log_metadata.last:
        entry.line += b"\n"
    stored = entry.SerializeToString()
    return HEADER.pack(len(stored)) + stored + HEADER.pack(len(stored))


# Line lengths around every change of the length's varint size (1, 2 and 3 bytes, before and after the newline).
BOUNDARY_LENGTHS = [0, 1, 2, 125, 126, 127, 128, 129, 200, 16_381, 16_382, 16_383, 16_384, 16_385, 20_000]
NOW_NS = 1_765_000_000_000_000_000


@given(source=st.sampled_from(["stdout", "stderr", "", "x", "stdoutx"]),
       time_nano=st.one_of(st.integers(NOW_NS - 10**18, NOW_NS + 10**18), st.integers(-(2**63), 2**63 - 1),
                           st.sampled_from([0, 1, 127, 128, 2**56 - 1, 2**56, 2**63 - 1, -1])),
       length=st.sampled_from(BOUNDARY_LENGTHS), fill=st.binary(min_size=1, max_size=1),
       partial=st.sampled_from([None, False, True]))
@settings(max_examples=300, deadline=None)
def test_every_entry_is_stored_as_decoding_and_encoding_it_would(source: str, time_nano: int, length: int,
                                                                 fill: bytes, partial: bool | None) -> None:
    entry = LogEntry(source=source, time_nano=time_nano, line=fill * length)
    if partial is not None:
        entry.partial = True
        entry.partial_log_metadata.last = partial
        entry.partial_log_metadata.id = "p"
    frame = encode_frame(entry)
    out = bytearray()
    assert FrameDecoder().feed(frame, out) == 1
    assert bytes(out) == reference_record(frame[HEADER_SIZE:])


def test_non_canonical_bodies_are_stored_as_decoding_and_encoding_them_would() -> None:
    """Bodies that look like dockerd's but differ in a byte the fast path relies on: an overlong time varint (its
    last byte 0), an overlong line length, a line followed by another field, a second line field."""
    head = b"\n\x06stdout\x10"
    time9 = bytes([0x80] * 8 + [0x01])
    overlong_time = bytes([0x80] * 8 + [0x00])
    bodies = [
        head + overlong_time + b"\x1a\x03abc",
        head + time9 + b"\x1a\x83\x00abc",  # length 3 in two bytes
        head + time9 + b"\x1a\x03abc\x20\x01",  # partial after line
        head + time9 + b"\x1a\x03abc\x1a\x02de",  # line twice: the last one wins
        head + time9 + b"\x1a" + bytes([0x80 | 200 & 0x7F, 200 >> 7]) + b"y" * 200,  # the fast path's own case
    ]
    for body in bodies:
        out = bytearray()
        assert FrameDecoder().feed(HEADER.pack(len(body)) + body, out) == 1, body
        assert bytes(out) == reference_record(body), body
