"""Unit tests for proto/framing.py and the generated proto/entry_pb2.py."""

from __future__ import annotations

import ast
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proto import entry_pb2
from proto.entry_pb2 import LogEntry, PartialLogEntryMetadata
from proto.framing import (
    FRAME_MARK,
    HEADER,
    HEADER_SIZE,
    MAX_FRAME,
    FrameSplitter,
    encode_frame,
    encode_record,
)

PROTO_DIR = Path(entry_pb2.__file__).resolve().parent

# --- helpers --------------------------------------------------------------------------------------------


@st.composite
def log_entries(draw: st.DrawFn) -> LogEntry:
    entry = LogEntry(
        source=draw(st.sampled_from(["stdout", "stderr"])),
        time_nano=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        line=draw(st.one_of(st.just(b""), st.binary(max_size=300))),
    )
    if draw(st.booleans()):
        entry.partial = True
        # Partial metadata may be complete, partial (some fields at their defaults) or absent.
        if draw(st.booleans()):
            entry.partial_log_metadata.CopyFrom(
                PartialLogEntryMetadata(
                    last=draw(st.booleans()),
                    id=draw(st.one_of(st.just(""), st.text(alphabet="0123456789abcdef", max_size=64))),
                    ordinal=draw(st.integers(min_value=0, max_value=2**31 - 1)),
                )
            )
    return entry


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed)."""
    bounds = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def feed_all(splitter: FrameSplitter, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    return out


def frame_of(line: bytes, source: str = "stdout", t: int = 1) -> bytes:
    return encode_frame(LogEntry(source=source, time_nano=t, line=line))


VALID = [frame_of(b"first", t=1), frame_of(b"", source="stderr", t=2), frame_of(b"third line", t=3)]
VALID_BODIES = [f[HEADER_SIZE:] for f in VALID]


# --- splitting valid streams ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(entries=st.lists(log_entries(), max_size=12), points=st.lists(st.integers(min_value=0), max_size=20))
def test_splitter_returns_exactly_the_bodies_for_any_chunking(entries: list[LogEntry], points: list[int]) -> None:
    bodies = [e.SerializeToString() for e in entries]
    stream = b"".join(encode_frame(e) for e in entries)
    splitter = FrameSplitter()
    assert feed_all(splitter, cut(stream, points)) == bodies
    assert splitter.pending == 0
    assert splitter.discarded_bytes == 0
    assert splitter.oversized_frames == 0
    # Bodies decode back to the entries.
    assert [LogEntry.FromString(b) for b in bodies] == entries


def test_splitter_one_byte_at_a_time() -> None:
    stream = b"".join(VALID)
    splitter = FrameSplitter()
    got = feed_all(splitter, [stream[i : i + 1] for i in range(len(stream))])
    assert got == VALID_BODIES
    assert splitter.pending == 0


def test_splitter_holds_incomplete_frame_until_complete() -> None:
    splitter = FrameSplitter()
    frame = VALID[0]
    assert splitter.feed(frame[:-1]) == []
    assert splitter.pending == len(frame) - 1
    assert splitter.feed(frame[-1:]) == [VALID_BODIES[0]]
    assert splitter.pending == 0


def test_zero_length_frame_is_an_empty_body() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(HEADER.pack(0) + VALID[0]) == [b"", VALID_BODIES[0]]


def test_frame_of_exactly_max_frame_is_accepted() -> None:
    body = b"x" * MAX_FRAME
    splitter = FrameSplitter()
    assert splitter.feed(HEADER.pack(MAX_FRAME) + body) == [body]
    assert splitter.oversized_frames == 0


# --- corrupt streams ----------------------------------------------------------------------------------------

BAD_HEADERS = {
    "max+1": HEADER.pack(MAX_FRAME + 1),
    "all-ff": b"\xff\xff\xff\xff",
    "16MiB": HEADER.pack(1 << 24),
}
GARBAGE = {
    "none": b"",
    "ee": b"\xee" * 37,
    "zeros": b"\x00" * 16,
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
@pytest.mark.parametrize("bad", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_oversized_then_valid_frames_in_one_chunk(bad: bytes, garbage: bytes) -> None:
    corrupt = bad + garbage
    splitter = FrameSplitter()
    assert splitter.feed(VALID[0] + corrupt + b"".join(VALID)) == [VALID_BODIES[0], *VALID_BODIES]
    assert splitter.oversized_frames == 1
    assert splitter.discarded_bytes == len(corrupt)
    assert splitter.pending == 0


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
@pytest.mark.parametrize("bad", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_oversized_then_valid_frames_across_two_chunks_at_every_split(bad: bytes, garbage: bytes) -> None:
    corrupt = bad + garbage
    stream = corrupt + b"".join(VALID)
    failures = []
    for split in range(len(stream) + 1):
        splitter = FrameSplitter()
        got = feed_all(splitter, [stream[:split], stream[split:]])
        state = (got, splitter.oversized_frames, splitter.discarded_bytes, splitter.pending)
        if state != (VALID_BODIES, 1, len(corrupt), 0):
            failures.append((split, state))
    assert failures == []


def test_corrupt_header_alone_in_its_chunk_then_valid_frames() -> None:
    """The plainest cross-chunk case: one write with a corrupt 16 MiB length, then dockerd's next frames."""
    splitter = FrameSplitter()
    assert splitter.feed(HEADER.pack(1 << 24)) == []
    assert splitter.feed(b"".join(VALID)) == VALID_BODIES
    assert splitter.oversized_frames == 1
    assert splitter.discarded_bytes == HEADER_SIZE
    assert splitter.pending == 0


def test_long_corrupt_stretch_over_many_chunks_counts_once() -> None:
    splitter = FrameSplitter()
    got: list[bytes] = []
    got += splitter.feed(VALID[0] + b"\xff\xff\xff\xff")
    for _ in range(50):
        got += splitter.feed(b"\xab" * 97)
    got += splitter.feed(b"".join(VALID))
    assert got == [VALID_BODIES[0], *VALID_BODIES]
    assert splitter.oversized_frames == 1
    assert splitter.discarded_bytes == 4 + 50 * 97
    assert splitter.pending == 0


def test_two_corrupt_stretches_count_twice() -> None:
    bad = b"\xff\xff\xff\xff" + b"\xee" * 10
    splitter = FrameSplitter()
    got = splitter.feed(bad + VALID[0] + bad + VALID[1])
    assert got == [VALID_BODIES[0], VALID_BODIES[1]]
    assert splitter.oversized_frames == 2
    assert splitter.discarded_bytes == 2 * len(bad)


def test_corrupt_length_before_an_intact_body_drops_that_body() -> None:
    """A frame whose own length is bad cannot be trusted: its body goes too, the next frame is found."""
    splitter = FrameSplitter()
    got = splitter.feed(b"\xff\xff\xff\xff" + VALID_BODIES[0] + VALID[1])
    assert got == [VALID_BODIES[1]]
    assert splitter.discarded_bytes == 4 + len(VALID_BODIES[0])
    assert splitter.oversized_frames == 1


@settings(max_examples=150, deadline=None)
@given(
    bad=st.integers(min_value=MAX_FRAME + 1, max_value=2**32 - 1),
    garbage=st.binary(max_size=60).filter(lambda g: FRAME_MARK not in g),
    entries=st.lists(log_entries(), min_size=1, max_size=5),
    points=st.lists(st.integers(min_value=0), max_size=8),
)
@example(  # a corrupt 16 MiB length alone in its chunk, then valid frames
    bad=1 << 24, garbage=b"", entries=[LogEntry(source="stdout", time_nano=1, line=b"x")], points=[4]
)
def test_resync_property(bad: int, garbage: bytes, entries: list[LogEntry], points: list[int]) -> None:
    """Oversized length + any garbage (not containing the mark), then valid frames: only those come out."""
    corrupt = HEADER.pack(bad) + garbage
    frames = b"".join(encode_frame(e) for e in entries)
    splitter = FrameSplitter()
    got = feed_all(splitter, cut(corrupt + frames, points))
    assert got == [e.SerializeToString() for e in entries]
    assert splitter.oversized_frames == 1
    assert splitter.discarded_bytes == len(corrupt)
    assert splitter.pending == 0


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=200), max_size=10))
def test_random_bytes_never_raise_and_every_byte_is_accounted(chunks: list[bytes]) -> None:
    splitter = FrameSplitter()
    got = feed_all(splitter, chunks)
    fed = sum(map(len, chunks))
    assert sum(map(len, got)) <= fed
    # Each byte fed is a header or body of a returned frame, discarded, or still pending.
    assert sum(len(b) + HEADER_SIZE for b in got) + splitter.discarded_bytes + splitter.pending == fed
    pending = splitter.pending
    dropped = splitter.discard_pending()
    assert dropped == pending  # what was dropped is exactly what was pending, no more, no less
    assert splitter.pending == 0
    assert sum(len(b) + HEADER_SIZE for b in got) + splitter.discarded_bytes == fed


def test_discard_pending_reports_incomplete_frame() -> None:
    splitter = FrameSplitter()
    partial = VALID[2][:-3]
    assert splitter.feed(VALID[0] + partial) == [VALID_BODIES[0]]
    assert splitter.pending == len(partial)
    assert splitter.discard_pending() == len(partial)
    assert splitter.pending == 0
    assert splitter.discarded_bytes == len(partial)
    # A clean end has nothing to drop, and the splitter goes on normally.
    assert splitter.feed(VALID[1]) == [VALID_BODIES[1]]
    assert splitter.discard_pending() == 0
    assert splitter.discarded_bytes == len(partial)


def test_discard_pending_of_a_partial_header() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(b"\x00\x00") == []
    assert splitter.discard_pending() == 2


# --- encoders -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"x", b"\x00" * 300, bytes(range(256))])
def test_encode_record_layout(body: bytes) -> None:
    record = encode_record(body)
    assert len(record) == len(body) + 2 * HEADER_SIZE
    assert record[:HEADER_SIZE] == record[-HEADER_SIZE:] == len(body).to_bytes(4, "big")
    assert record[HEADER_SIZE:-HEADER_SIZE] == body


def test_encode_frame_layout() -> None:
    entry = LogEntry(source="stderr", time_nano=42, line=b"abc", partial=True)
    frame = encode_frame(entry)
    body = entry.SerializeToString()
    assert frame == len(body).to_bytes(4, "big") + body
    assert body.startswith(FRAME_MARK)


# --- the generated module and Docker's wire format ------------------------------------------------------------


def _serialized_descriptor(source: str) -> bytes:
    """The bytes passed to ``AddSerializedFile`` in a generated ``*_pb2.py``."""
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
        ):
            value = ast.literal_eval(node.args[0])
            assert isinstance(value, bytes)
            return value
    raise AssertionError("no AddSerializedFile call in generated code")


def _version_line(source: str) -> str:
    return next((ln for ln in source.splitlines() if ln.startswith("# Protobuf Python Version")), "")


def test_checked_in_entry_pb2_matches_entry_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    shutil.copy(PROTO_DIR / "entry.proto", src / "entry.proto")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{src}", f"--python_out={out}", "entry.proto"],
        cwd=src,
        check=True,
        capture_output=True,
    )
    generated = (out / "entry_pb2.py").read_text()
    checked_in = (PROTO_DIR / "entry_pb2.py").read_text()
    assert _serialized_descriptor(generated) == _serialized_descriptor(checked_in)
    assert _serialized_descriptor(checked_in) == entry_pb2.DESCRIPTOR.serialized_pb
    if _version_line(generated) == _version_line(checked_in):
        assert generated == checked_in


def test_entry_proto_has_no_package() -> None:
    text = (PROTO_DIR / "entry.proto").read_text()
    assert not any(line.strip().startswith("package") for line in text.splitlines())
    assert entry_pb2.DESCRIPTOR.package == ""
    assert LogEntry.DESCRIPTOR.full_name == "LogEntry"
    assert PartialLogEntryMetadata.DESCRIPTOR.full_name == "PartialLogEntryMetadata"


def _fields(descriptor: object) -> list[tuple[str, int, int]]:
    return sorted((f.name, f.number, f.type) for f in descriptor.fields)  # type: ignore[attr-defined]


def test_descriptor_has_exactly_dockers_fields() -> None:
    assert _fields(LogEntry.DESCRIPTOR) == sorted(
        [
            ("source", 1, FieldDescriptor.TYPE_STRING),
            ("time_nano", 2, FieldDescriptor.TYPE_INT64),
            ("line", 3, FieldDescriptor.TYPE_BYTES),
            ("partial", 4, FieldDescriptor.TYPE_BOOL),
            ("partial_log_metadata", 5, FieldDescriptor.TYPE_MESSAGE),
        ]
    )
    assert LogEntry.DESCRIPTOR.fields_by_name["partial_log_metadata"].message_type is (
        PartialLogEntryMetadata.DESCRIPTOR
    )
    assert _fields(PartialLogEntryMetadata.DESCRIPTOR) == sorted(
        [
            ("last", 1, FieldDescriptor.TYPE_BOOL),
            ("id", 2, FieldDescriptor.TYPE_STRING),
            ("ordinal", 3, FieldDescriptor.TYPE_INT32),
        ]
    )
    file_proto = descriptor_pb2.FileDescriptorProto.FromString(entry_pb2.DESCRIPTOR.serialized_pb)
    assert file_proto.syntax == "proto3"


DOC_EXAMPLE = bytes.fromhex(
    "00 00 00 19  0a 06 73 74 64 6f 75 74  10 95 9a 97 ec e3 9f e7 cb 17  1a 05 68 65 6c 6c 6f"
)


def test_protocol_doc_worked_example() -> None:
    entry = LogEntry(source="stdout", time_nano=1700000000123456789, line=b"hello")
    assert len(entry.SerializeToString()) == 25
    assert encode_frame(entry) == DOC_EXAMPLE
    assert FrameSplitter().feed(DOC_EXAMPLE) == [DOC_EXAMPLE[HEADER_SIZE:]]
    assert LogEntry.FromString(DOC_EXAMPLE[HEADER_SIZE:]) == entry


def test_partial_chunk_wire_layout_from_doc() -> None:
    chunk_id = "ab" * 32
    entry = LogEntry(
        source="stdout",
        time_nano=1,
        line=b"x",
        partial=True,
        partial_log_metadata=PartialLogEntryMetadata(last=True, id=chunk_id, ordinal=3),
    )
    meta = b"\x08\x01\x12\x40" + chunk_id.encode() + b"\x18\x03"
    assert entry.SerializeToString().endswith(b"\x20\x01\x2a" + bytes([len(meta)]) + meta)
