"""Records and requests for the local store's tests (the on-disk layout of proto/framing.py)."""

from __future__ import annotations

from proto.entry_pb2 import LogEntry
from proto.framing import HEADER, HEADER_SIZE, encode_record
from proto.messages import ReadRequest

CID = "0123456789abcdef" * 4


def stored(t: int, line: bytes | None = None, source: str = "stdout") -> LogEntry:
    return LogEntry(source=source, time_nano=t, line=b"line at %d\n" % t if line is None else line)


def record(entry: LogEntry) -> bytes:
    return encode_record(entry.SerializeToString())


def request(
    tail: int = -1, since: int = 0, until: int = 0, follow: bool = False, fifos: tuple[str, ...] = (),
    draining: tuple[str, ...] = (),
) -> ReadRequest:
    return ReadRequest(CID, since_ns=since, until_ns=until, tail=tail, follow=follow, open_fifos=list(fifos),
                       draining_fifos=list(draining))


def times(entries: list[LogEntry]) -> list[int]:
    return [e.time_nano for e in entries]


def bodies(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, body) of every record in ``data``, markers included: the tests' own walk, independent of the
    walkers in proto/framing.py that the code under test uses."""
    out, pos = [], 0
    while pos < len(data):
        (n,) = HEADER.unpack_from(data, pos)
        out.append((pos, data[pos + HEADER_SIZE : pos + HEADER_SIZE + n]))
        pos += n + 2 * HEADER_SIZE
    return out
