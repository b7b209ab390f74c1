"""Unit tests for proto/messages.py."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.messages import (
    MESSAGE_TYPES,
    VERSION,
    Ack,
    Batch,
    ChildStats,
    Fetch,
    Followers,
    LoggerClosed,
    LoggersSynced,
    LoggerStarted,
    Message,
    MessageError,
    ReadRequest,
    Records,
    ShipContainer,
    StatsPart,
    Stored,
    decode,
    decode_frames,
)

CID = "0123456789abcdef" * 4
FIFO = "/run/docker/logging/" + "f" * 64

SAMPLES: list[Message] = [
    Batch(CID, FIFO, seq=7, count=2, records=b"\x00\x00\x00\x01x\x00\x00\x00\x01" * 2),
    Batch(CID, FIFO, seq=0, count=0, records=b""),
    LoggerClosed(CID, FIFO, lines=123, discarded=4),
    Stored(FIFO, seq_end=123, closed=False),
    ChildStats("reader", {"lines_total": 5, "busy_seconds": 0.25}),
    ChildStats("localstore"),
    LoggerStarted(
        CID,
        FIFO,
        {"ContainerID": CID, "Config": {"mode": "non-blocking"}, "ContainerArgs": None},
        max_size=10_000_000,
        max_file=5,
        compress=True,
        ships=False,
    ),
    ShipContainer(CID, {"ContainerID": CID}, {"hosts": ["http://127.0.0.1:9200"], "password": "pw"}),
    Fetch(CID, generation=-1, offset=0, max_bytes=1 << 20),
    Records(CID, 0, 0, 1, 10, b"x" * 10, skipped_files=0, stopped=False),
    Ack(CID, generation=3, offset=1234),
    Followers(2),
    ReadRequest(CID, since_ns=1, until_ns=2**62, tail=-1, follow=True, open_fifos=[FIFO, FIFO + "2"],
                draining_fifos=[FIFO]),
    ReadRequest(CID, since_ns=0, until_ns=0, tail=0, follow=False, open_fifos=[], draining_fifos=[]),
    StatsPart("shipper", report=3, last=True, per_container={CID: {"docs_total": 1}}, outputs=[{"output": "x"}]),
    LoggersSynced(loggers=12),
]


def test_every_message_type_has_a_sample() -> None:
    assert {type(m) for m in SAMPLES} == set(MESSAGE_TYPES.values())
    assert set(MESSAGE_TYPES) == {cls.KIND for cls in MESSAGE_TYPES.values()}
    assert all(cls.KIND for cls in MESSAGE_TYPES.values())


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    decoded = decode(message.encode())
    assert type(decoded) is type(message)
    assert decoded == message


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_wire_format_is_a_map_with_kind_and_version(message: Message) -> None:
    wire = msgpack.unpackb(message.encode(), raw=False)
    assert wire["kind"] == message.KIND
    assert wire["v"] == VERSION
    assert set(wire) == {"kind", "v"} | {f.name for f in fields(message)}


def test_batch_records_stay_bytes() -> None:
    decoded = decode(Batch(CID, FIFO, 1, 1, b"\xff\x00").encode())
    assert isinstance(decoded, Batch)
    assert decoded.records == b"\xff\x00"
    assert isinstance(decoded.records, bytes)


def test_unknown_extra_fields_are_ignored() -> None:
    raw = msgpack.packb({"kind": "ack", "v": VERSION, "container_id": CID, "generation": 1, "offset": 2, "extra": 1})
    assert decode(raw) == Ack(CID, 1, 2)


def _wire(message: Message) -> dict[str, Any]:
    wire: dict[str, Any] = msgpack.unpackb(message.encode(), raw=False)
    return wire


BAD: dict[str, bytes] = {
    "empty": b"",
    "not-msgpack": b"\xc1",  # never used in msgpack
    "truncated-map": msgpack.packb({"kind": "ack", "v": 1})[:-2],
    "trailing-bytes": msgpack.packb({"kind": "ack"}) + b"\x01",
    "int": msgpack.packb(5),
    "list": msgpack.packb(["kind", "ack"]),
    "string": msgpack.packb("ack"),
    "nil": msgpack.packb(None),
    "no-kind": msgpack.packb({"v": VERSION, "container_id": CID, "generation": 1, "offset": 2}),
    "unknown-kind": msgpack.packb({"kind": "nope", "v": VERSION}),
    "kind-not-str": msgpack.packb({"kind": 1, "v": VERSION}),
    "kind-bytes": msgpack.packb({"kind": b"ack", "v": VERSION, "container_id": CID, "generation": 1, "offset": 2},
                                use_bin_type=True),
    "wrong-version": msgpack.packb({**_wire(Ack(CID, 1, 2)), "v": VERSION + 1}),
    "no-version": msgpack.packb({"kind": "ack", "container_id": CID, "generation": 1, "offset": 2}),
    "version-str": msgpack.packb({**_wire(Ack(CID, 1, 2)), "v": "1"}),
    "unhashable-key": b"\x81\x90\x01",  # {[]: 1}
}


@pytest.mark.parametrize("raw", BAD.values(), ids=BAD.keys())
def test_decode_rejects_with_message_error(raw: bytes) -> None:
    with pytest.raises(MessageError):
        decode(raw)


def _required(cls: type[Message]) -> list[str]:
    return [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]


@pytest.mark.parametrize(
    ("message", "missing"),
    [(m, name) for m in SAMPLES for name in _required(type(m))],
    ids=lambda x: x if isinstance(x, str) else type(x).__name__,
)
def test_decode_rejects_missing_required_field(message: Message, missing: str) -> None:
    wire = _wire(message)
    del wire[missing]
    with pytest.raises(MessageError, match=message.KIND):
        decode(msgpack.packb(wire, use_bin_type=True))


def test_message_error_is_a_value_error() -> None:
    assert issubclass(MessageError, ValueError)


def _check(raw: bytes) -> None:
    try:
        result = decode(raw)
    except MessageError:
        return
    assert isinstance(result, Message)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_message_error(raw: bytes) -> None:
    _check(raw)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats()
    | st.text(max_size=10) | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
ALL_FIELD_NAMES = sorted({f.name for cls in MESSAGE_TYPES.values() for f in fields(cls)})


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from([*MESSAGE_TYPES, "x"]),
    version=st.one_of(st.just(VERSION), msgpack_values),
    body=st.dictionaries(st.sampled_from(ALL_FIELD_NAMES) | st.text(max_size=5), msgpack_values, max_size=8),
)
def test_arbitrary_maps_only_raise_message_error(kind: str, version: Any, body: dict[str, Any]) -> None:
    raw = msgpack.packb({**body, "kind": kind, "v": version}, use_bin_type=True)
    _check(raw)


def test_batch_frames_carry_the_records_raw_beside_a_small_header() -> None:
    records = b"\x00\x00\x00\x01x\x00\x00\x00\x01" * 3
    header, raw = Batch(CID, FIFO, seq=7, count=3, records=records).frames()
    assert raw is records  # not copied, not wrapped
    assert msgpack.unpackb(header, raw=False) == {"kind": "batch", "v": VERSION, "container_id": CID,
                                                  "fifo": FIFO, "seq": 7, "count": 3}
    decoded = decode_frames([header, memoryview(raw)])
    assert decoded == Batch(CID, FIFO, seq=7, count=3, records=records)
    assert isinstance(decoded, Batch) and isinstance(decoded.records, memoryview)  # as received: no copy


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_frames_round_trip(message: Message) -> None:
    assert decode_frames(message.frames()) == message


@pytest.mark.parametrize("frames", [
    [],
    [b"a", b"b", b"c"],
    [Ack(CID, 1, 2).encode(), b"raw"],  # a message without a raw field
    [Batch(CID, FIFO, 1, 1, b"r").encode(), b"raw"],  # the records twice
    [b"\xc1", b"raw"],
    [msgpack.packb(5), b"raw"],
    [msgpack.packb({"kind": "batch", "v": VERSION, "container_id": CID, "fifo": FIFO, "seq": "1", "count": 1}),
     b"raw"],
], ids=["none", "three", "no-raw-field", "records-twice", "bad-header", "header-not-map", "bad-field"])
def test_bad_frames_raise_message_error(frames: list[bytes]) -> None:
    with pytest.raises(MessageError):
        decode_frames(frames)
