"""The local store stores a reader's batches once and in order; a gap (a batch lost in a killed store) is refused
until the reader re-sends from its oldest held batch."""

from __future__ import annotations

from pathlib import Path

from localstore.store import LocalStore
from proto.framing import encode_frame
from proto.messages import SEQ_SHIFT
from testkit.dockerd_driver import entry, new_container_id
from workers.decoder import FrameDecoder

FIFO = "f" * 64


def records(first: int, count: int) -> bytes:
    out = bytearray()
    FrameDecoder().feed(b"".join(encode_frame(entry(b"line %d" % i)) for i in range(first, first + count)), out)
    return bytes(out)


def stored_lines(store: LocalStore, container_id: str) -> int:
    return store.get(container_id).records_total


def test_a_batch_after_a_gap_is_refused_until_the_oldest_held_one_comes(tmp_path: Path) -> None:
    store, cid = LocalStore(tmp_path), new_container_id()
    base = 7 << SEQ_SHIFT
    assert store.append_batch(cid, FIFO, base, records(0, 10), 10), "a new incarnation's first batch"
    # base+10..+20 died in a killed store's queue; the next batch skips over it
    assert not store.append_batch(cid, FIFO, base + 20, records(20, 10), 10)
    assert not store.append_batch(cid, FIFO, base + 30, records(30, 10), 10)
    # the reader, unconfirmed, sends everything it holds again, the lost batch first
    assert store.append_batch(cid, FIFO, base + 10, records(10, 10), 10)
    assert store.append_batch(cid, FIFO, base + 20, records(20, 10), 10)
    assert store.append_batch(cid, FIFO, base + 30, records(30, 10), 10)
    assert store.append_batch(cid, FIFO, base + 20, records(20, 10), 10), "a re-sent stored batch: confirmed"
    assert stored_lines(store, cid) == 40
    assert store.counters.batches_total == 4, "refused and re-sent batches are not counted as written"
    assert store.counters.out_of_order_refused_total == 2
    assert store.counters.duplicates_skipped_total == 10


def test_a_reader_that_dropped_its_oldest_batches_is_taken_from_its_oldest_held_one(tmp_path: Path) -> None:
    store, cid = LocalStore(tmp_path), new_container_id()
    base = 7 << SEQ_SHIFT
    assert store.append_batch(cid, FIFO, base, records(0, 10), 10)
    # the reader dropped base+10..+20 itself (its bound was reached): base+20 is the oldest it will ever send
    assert not store.append_batch(cid, FIFO, base + 20, records(20, 10), 10)
    assert store.append_batch(cid, FIFO, base + 20, records(20, 10), 10), "sent again: nothing older exists"
    assert store.append_batch(cid, FIFO, base + 30, records(30, 10), 10)
    assert stored_lines(store, cid) == 30


def test_a_new_reader_incarnation_starts_a_fresh_range(tmp_path: Path) -> None:
    store, cid = LocalStore(tmp_path), new_container_id()
    assert store.append_batch(cid, FIFO, 7 << SEQ_SHIFT, records(0, 10), 10)
    assert store.append_batch(cid, FIFO, 9 << SEQ_SHIFT, records(10, 10), 10)
    assert stored_lines(store, cid) == 20
