"""R4, frames: mutated FIFO streams never stop a reader, are counted, and cost no valid line the design can save.

What the design promises (proto/framing.py, workers/decoder.py): a length above ``MAX_FRAME`` starts a corrupt
stretch, counted once, that ends at the next header followed by ``FRAME_MARK``; a frame of a believable length whose
body does not decode is counted, and the frames its wrong length swallowed are salvaged from its body; a frame cut
short by EOF is counted in bytes. A wrong believable length whose span reaches past EOF still loses what it held
(tested: only "never raises, every byte accounted for").

Two levels: in-process with hypothesis against FrameSplitter/FrameDecoder, and through the real plugin, whose
FIFOs get the mutated frames interleaved with numbered valid lines while the writer times every write().
"""

from __future__ import annotations

import itertools
import os
import random
import re
import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.entry_pb2 import LogEntry
from proto.framing import FRAME_MARK, HEADER, HEADER_SIZE, MAX_FRAME, FrameSplitter, encode_frame
from testkit.dockerd_driver import FakeLogger
from testkit.plugin import RunningPlugin, wait_until
from tests.reliability.conftest import FigureTable, scale
from workers.decoder import FrameDecoder

MUTATED_FRAMES = scale(100_000, 1_000_000)
LOGGERS = 3
WRITE_CHUNK = 64 * 1024
# A write() on the FIFO that takes longer than this means the container was blocked: the reader stopped draining.
# Generous because the machine is shared: a reader that is merely short of CPU also makes writes wait (a full run
# at load average 10 on 2 cores saw 1.5 s; unloaded, 60-300 ms). A reader that stopped draining shows as the
# give-up deadline instead of a hung test.
WRITE_STALL_BOUND_S = 5.0
WRITE_GIVE_UP_S = 30.0
VALID_LINE = re.compile(rb"valid-(\d+)-(\d+)\n")
# Lines that mutations start from: a flipped byte can never turn one into a numbered valid line.
JUNK_SOURCE_LINE = b"zzzz-mutation-source-zzzz"


def valid_frame(logger: int, seq: int) -> bytes:
    return encode_frame(LogEntry(source="stdout", time_nano=1_700_000_000_000_000_000 + seq,
                                 line=b"valid-%d-%d" % (logger, seq)))


def decodes(body: bytes) -> bool:
    try:
        LogEntry.FromString(body)
    except DecodeError:
        return False
    return True


@dataclass
class Expected:
    """What a reader must report for a stream built by ``Mutator``."""

    bad_frames: int = 0
    junk_lines: int = 0


class Mutator:
    """Corruptions whose outcome the design promises; each must be followed by a valid frame (which ends a corrupt
    stretch, so every stretch counts once)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.kinds: list[Callable[[], bytes]] = [self.oversized, self.all_ones, self.garbage_body,
                                                 self.truncated_body, self.flipped_body, self.empty_body]

    def __call__(self, expected: Expected) -> bytes:
        frame = self.rng.choice(self.kinds)()
        if HEADER.unpack_from(frame)[0] > MAX_FRAME:
            expected.bad_frames += 1
        elif decodes(frame[HEADER_SIZE:]):
            expected.junk_lines += 1
        else:
            expected.bad_frames += 1
        return frame

    def _garbage(self, most: int) -> bytes:
        data = self.rng.randbytes(self.rng.randrange(most + 1))
        while FRAME_MARK in data:  # the mark would make a believable frame start out of garbage
            data = data.replace(FRAME_MARK, b"")
        return data

    def oversized(self) -> bytes:
        return HEADER.pack(self.rng.randrange(MAX_FRAME + 1, 2**32)) + self._garbage(40)

    def all_ones(self) -> bytes:
        return b"\xff\xff\xff\xff" + self._garbage(8)

    def garbage_body(self) -> bytes:
        body = self._garbage(40)
        return HEADER.pack(len(body)) + body

    def _source_body(self) -> bytes:
        return LogEntry(source="stderr", time_nano=self.rng.randrange(2**62), line=JUNK_SOURCE_LINE).SerializeToString()

    def truncated_body(self) -> bytes:
        body = self._source_body()[: self.rng.randrange(1, 30)]
        return HEADER.pack(len(body)) + body

    def flipped_body(self) -> bytes:
        body = bytearray(self._source_body())
        body[self.rng.randrange(len(body))] ^= 1 << self.rng.randrange(8)
        return HEADER.pack(len(body)) + bytes(body)

    def empty_body(self) -> bytes:
        return HEADER.pack(0)


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def feed_in_chunks(reader: FrameDecoder, stream: bytes, cuts: list[int]) -> bytearray:
    out = bytearray()
    for chunk in chunked(stream, cuts):
        reader.feed(chunk, out)
    return out


def stored_lines(records: bytes | bytearray) -> list[bytes]:
    """The lines of ``[N][LogEntry][N]`` records, checking the layout on the way."""
    lines, pos = [], 0
    while pos < len(records):
        (n,) = HEADER.unpack_from(records, pos)
        assert records[pos + HEADER_SIZE + n: pos + 2 * HEADER_SIZE + n] == records[pos: pos + HEADER_SIZE]
        lines.append(LogEntry.FromString(records[pos + HEADER_SIZE: pos + HEADER_SIZE + n]).line)
        pos += n + 2 * HEADER_SIZE
    return lines


# --- in-process ----------------------------------------------------------------------------------------------


@settings(max_examples=scale(300, 3000), deadline=None, database=None)
@given(seed=st.integers(0, 2**32), pattern=st.lists(st.booleans(), max_size=60),
       cuts=st.lists(st.integers(min_value=0), max_size=30), cut_tail=st.integers(0, 40))
def test_promised_corruptions_lose_no_valid_frame(seed: int, pattern: list[bool], cuts: list[int],
                                                  cut_tail: int) -> None:
    """Valid and corrupt frames in any order and any chunking: every valid frame comes out, each corruption is
    counted once, and a frame cut by EOF is counted in bytes."""
    mutate, expected = Mutator(random.Random(seed)), Expected()
    parts, valid = [], 0
    for corrupt in pattern:
        if corrupt:
            parts.append(mutate(expected))
        parts.append(valid_frame(0, valid))
        valid += 1
    last = valid_frame(0, valid)
    torn = last[: min(cut_tail, len(last) - 1)]
    reader = FrameDecoder()
    records = feed_in_chunks(reader, b"".join(parts) + torn, cuts)
    assert reader.finish() == len(torn)
    lines = stored_lines(records)
    numbered = [line for line in lines if VALID_LINE.fullmatch(line)]
    assert numbered == [b"valid-0-%d\n" % i for i in range(valid)]
    assert len(lines) - len(numbered) == expected.junk_lines
    assert reader.discarded_frames == expected.bad_frames
    assert reader.counters.lines == len(lines)


@settings(max_examples=scale(300, 3000), deadline=None, database=None)
@given(frames=st.lists(st.integers(0, 40), max_size=40),
       edits=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=12), st.integers(0, 8)), max_size=8),
       cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_any_mutation_never_raises_and_accounts_for_every_byte(frames: list[int], edits: list[tuple[int, bytes, int]],
                                                               cuts: list[int]) -> None:
    """Arbitrary edits (wrong believable lengths, cuts, insertions anywhere): the reader never raises, every byte
    is a stored frame, discarded or pending, and every record it produces is well formed."""
    stream = bytearray(b"".join(valid_frame(0, i) for i in range(len(frames))))
    for at, insert, delete in edits:
        at %= len(stream) + 1
        stream[at: at + delete] = insert
    reader, splitter = FrameDecoder(), FrameSplitter()
    records = feed_in_chunks(reader, bytes(stream), cuts)
    assert reader.counters.lines == len(stored_lines(records))
    bodies = [body for chunk in chunked(bytes(stream), cuts) for body in splitter.feed(chunk)]
    # Each body is a line or counted; one that does not decode may give back the lines it swallowed besides.
    assert reader.counters.lines + reader.counters.undecodable_frames >= len(bodies)
    handed_out = sum(HEADER_SIZE + len(body) for body in bodies)
    assert handed_out + splitter.discarded_bytes + splitter.pending == len(stream)
    assert reader.finish() == splitter.pending


SPAN_MARGIN = 16 * 1024


@settings(max_examples=scale(200, 2000), deadline=None, database=None, derandomize=True)
@given(victim=st.integers(0, 50), share=st.floats(0, 1), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_a_wrong_believable_length_costs_a_few_frames(victim: int, share: float, cuts: list[int]) -> None:
    """A frame's length replaced by any believable value whose span ends inside the stream: the frames it swallowed
    are salvaged, so only the frame itself and the one cut at the span's end (rarely one more) are lost."""
    frames = [valid_frame(0, i) for i in range(1000)]
    # The span must end well before EOF: landing in a header's second byte reads a believable length too (a few KB
    # here), and what that one holds at EOF is lost with it.
    wrong = int(share * (sum(map(len, frames[victim + 1:])) - SPAN_MARGIN))
    frames[victim] = HEADER.pack(wrong) + frames[victim][HEADER_SIZE:]
    reader = FrameDecoder()
    lines = stored_lines(feed_in_chunks(reader, b"".join(frames), cuts))
    numbers = [int(m.group(2)) for m in map(VALID_LINE.fullmatch, lines) if m]
    assert numbers == sorted(set(numbers)), "in order, never twice"
    assert numbers[-1] == len(frames) - 1, "the reader is back in step"
    assert len(frames) - len(numbers) <= 3
    assert reader.discarded_frames >= (len(frames) - len(numbers) > 1)


def test_huge_declared_lengths_never_wait_for_their_bytes() -> None:
    """A length above MAX_FRAME is never believed: the frames right after it come out at once, with no more input."""
    sizes = (MAX_FRAME + 1, 1 << 24, 2**31, 2**32 - 1)
    reader = FrameDecoder()
    out = bytearray()
    for size in sizes:
        reader.feed(HEADER.pack(size) + b"\x01\x02", out)
        reader.feed(valid_frame(0, size), out)
    assert stored_lines(out) == [b"valid-0-%d\n" % s for s in sizes]
    assert reader.discarded_frames == 4
    assert reader.splitter.pending == 0


# --- through the real plugin ------------------------------------------------------------------------------------


@dataclass
class FuzzedLogger:
    logger: FakeLogger
    index: int
    stream: bytes = b""
    valid: int = 0
    expected: Expected = field(default_factory=Expected)


def build_streams(count: int, loggers: list[FakeLogger]) -> list[FuzzedLogger]:
    """``count`` mutated frames spread over the loggers, each followed by a numbered valid line."""
    rng = random.Random(4)
    mutate = Mutator(rng)
    fuzzed = [FuzzedLogger(lg, i) for i, lg in enumerate(loggers)]
    parts: list[list[bytes]] = [[] for _ in loggers]
    for n in range(count):
        target = fuzzed[n % len(fuzzed)]
        parts[target.index].append(mutate(target.expected))
        parts[target.index].append(valid_frame(target.index, target.valid))
        target.valid += 1
    for target in fuzzed:
        target.stream = b"".join(parts[target.index])
    return fuzzed


def write_all(plugin: RunningPlugin, fuzzed: list[FuzzedLogger]) -> float:
    """Write every stream, round-robin in 64 KiB pieces, as dockerd's copiers would; return the longest write()."""
    longest = 0.0
    offsets = [0] * len(fuzzed)
    while any(off < len(f.stream) for off, f in zip(offsets, fuzzed, strict=True)):
        for i, target in enumerate(fuzzed):
            piece = memoryview(target.stream)[offsets[i]: offsets[i] + WRITE_CHUNK]
            while piece:
                began = time.monotonic()
                written = write_waiting(target.logger.fd, piece)
                longest = max(longest, time.monotonic() - began)
                piece = piece[written:]
                offsets[i] += written
        assert plugin.proc.poll() is None, "the supervisor died while being fuzzed"
    return longest


def write_waiting(fd: int, data: memoryview) -> int:
    """One write() as a blocking writer sees it, but giving up (failing) when the FIFO is not drained at all."""
    os.set_blocking(fd, False)
    deadline = time.monotonic() + WRITE_GIVE_UP_S
    while True:
        try:
            return os.write(fd, data)
        except BlockingIOError:
            left = deadline - time.monotonic()
            assert left > 0, f"the FIFO was not drained for {WRITE_GIVE_UP_S} s"
            select.select([], [fd], [], left)


def test_mutated_frames_through_the_plugin(plugin: RunningPlugin, figures: FigureTable) -> None:
    loggers = [plugin.logger(name=f"fuzz-{i}") for i in range(LOGGERS)]
    for lg in loggers:
        assert lg.start() == {"_status": 200}
    fuzzed = build_streams(MUTATED_FRAMES, loggers)
    longest_write = write_all(plugin, fuzzed)

    def reader_of(target: FuzzedLogger) -> dict[str, Any]:
        return next(r for r in plugin.stats()["readers"] if r["container_id"] == target.logger.container_id)

    def counted(target: FuzzedLogger) -> bool:
        reader = reader_of(target)
        return reader.get("lines_total") == target.valid + target.expected.junk_lines and \
            reader.get("frames_discarded_total") == target.expected.bad_frames

    for target in fuzzed:
        wait_until(partial(counted, target), 60, message=f"logger {target.index}'s reader to count every frame")
    bad_counted = sum(int(reader_of(t)["frames_discarded_total"]) for t in fuzzed)
    metrics = plugin.client.request("/metrics", None, method="GET")[1].decode()
    in_metrics = [t for t in fuzzed if re.search(
        rf'elp_reader_frames_discarded_total\{{container_id="{t.logger.container_id[:12]}"[^}}]*\}} '
        rf"{t.expected.bad_frames}(\.0)?\n", metrics)]
    stats = plugin.stats()
    reader_restarts = sum(int(r["restarts"]) for r in stats["readers"])
    for lg in loggers:
        lg.stop()
    recovered = 0
    for target in fuzzed:
        lines = [e.line for e in plugin.client.read_logs(target.logger.info, timeout=60)]
        numbered = [line for line in lines if VALID_LINE.fullmatch(line)]
        if numbered == [b"valid-%d-%d\n" % (target.index, i) for i in range(target.valid)]:
            recovered += len(numbered)
    expected_valid = sum(t.valid for t in fuzzed)
    expected_bad = sum(t.expected.bad_frames for t in fuzzed)

    figures.add("R4", f"frames: mutated frames sent through {LOGGERS} FIFOs (each followed by a valid line)",
                MUTATED_FRAMES, "1M (full), 100k (CI)", True)
    figures.add("R4", "frames: counted bad in /stats ÷ expected", f"{bad_counted} / {expected_bad}", "equal",
                bad_counted == expected_bad)
    figures.add("R4", "frames: per-container discarded count in /metrics", f"{len(in_metrics)} / {LOGGERS}",
                "all", len(in_metrics) == LOGGERS)
    figures.add("R4", "frames: valid lines recovered ÷ expected (read back with ReadLogs)",
                f"{recovered} / {expected_valid}", "equal", recovered == expected_valid)
    load = os.getloadavg()[0]
    figures.add("R4", "frames: longest single write() on a FIFO",
                f"{longest_write * 1000:.1f} ms (load average {load:.1f} on {os.cpu_count()} CPUs)",
                f"< {WRITE_STALL_BOUND_S:.0f} s (never blocked)", longest_write < WRITE_STALL_BOUND_S)
    figures.add("R4", "frames: supervisor and reader restarts", stats["supervisor"]["restarts"] + reader_restarts,
                "0", stats["supervisor"]["restarts"] + reader_restarts == 0)
    assert plugin.proc.poll() is None
    assert bad_counted == expected_bad
    assert len(in_metrics) == LOGGERS
    assert recovered == expected_valid
    assert longest_write < WRITE_STALL_BOUND_S
    assert stats["supervisor"]["restarts"] == 0 and reader_restarts == 0
