"""R4, HTTP: bad requests on the plugin socket get a clear error, the supervisor stays up, nothing outside the data
dir is touched.

The real supervisor is started; every request goes over its unix socket as dockerd's would. Before and after, the
temporary tree (everything but the data dir and the plugin's own log) and a canary folder next to it are
snapshotted: file list, sizes and mtimes must not change, and the canary FIFO must never get a reader.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.dockerd_driver import make_info, new_container_id
from testkit.plugin import RunningPlugin, start_plugin
from tests.reliability.conftest import FigureTable, scale

ENDPOINTS = ("/LogDriver.StartLogging", "/LogDriver.StopLogging", "/LogDriver.ReadLogs")
HUGE_BODY = 64 << 20
RANDOM_BODIES_PER_ENDPOINT = scale(120, 2000)

Snapshot = dict[str, tuple[str, int, int]]


@dataclass
class Tally:
    """What the fuzzing saw, for the figures table."""

    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    unclear: list[str] = field(default_factory=list)

    def record(self, what: str, status: int, body: bytes) -> None:
        self.requests += 1
        if status >= 500:
            self.server_errors.append(f"{what}: {status} {body[:200]!r}")


@dataclass
class Sandbox:
    """The plugin, its FIFO folder, and a canary folder beside it that must stay untouched."""

    plugin: RunningPlugin
    base: Path
    canary: Path
    outside_fifo: Path
    inside_fifo: Path

    def snapshot(self) -> Snapshot:
        """Every path under the temporary tree but the data dir and the plugin's log: type, size, mtime."""
        seen: Snapshot = {}
        skip = {self.plugin.data_dir, self.plugin.log_path, self.plugin.socket_path}
        for root, dirs, files in os.walk(self.base):
            dirs[:] = [d for d in dirs if Path(root, d) not in skip]
            for name in [*dirs, *files]:
                path = Path(root, name)
                if path in skip:
                    continue
                st_ = path.lstat()
                kind = "fifo" if path.is_fifo() else "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
                seen[str(path.relative_to(self.base))] = (kind, st_.st_size, st_.st_mtime_ns)
        return seen

    def outside_fifo_has_a_reader(self) -> bool:
        """Opening a FIFO's write end without blocking fails with ENXIO exactly when nobody has it open to read."""
        try:
            fd = os.open(self.outside_fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.ENXIO
            return False
        os.close(fd)
        return True


@pytest.fixture
def sandbox(short_tmp: Path) -> Iterator[Sandbox]:
    canary = short_tmp / "canary"
    canary.mkdir()
    (canary / "victim.txt").write_text("must stay as it is\n")
    outside_fifo = canary / "outside.fifo"
    os.mkfifo(outside_fifo, 0o600)
    plugin = start_plugin(short_tmp)
    inside_fifo = plugin.fifo_dir / "real.fifo"
    os.mkfifo(inside_fifo, 0o600)
    (plugin.fifo_dir / "link.fifo").symlink_to(outside_fifo)
    (plugin.fifo_dir / "subdir").mkdir()
    (plugin.fifo_dir / "plain.txt").write_text("not a fifo\n")
    try:
        yield Sandbox(plugin, short_tmp, canary, outside_fifo, inside_fifo)
    finally:
        plugin.stop()


def post(sandbox: Sandbox, path: str, body: bytes, method: str = "POST") -> tuple[int, bytes]:
    return sandbox.plugin.client.request(path, body, method=method)


def err_of(body: bytes) -> str:
    """The ``Err`` of a plugin-protocol answer ("" when there is none)."""
    try:
        reply = json.loads(body)
    except ValueError:
        return ""
    return str(reply.get("Err", "")) if isinstance(reply, dict) else ""


def assert_still_serving(sandbox: Sandbox) -> None:
    """The supervisor is up and answers a valid request."""
    assert sandbox.plugin.proc.poll() is None, sandbox.plugin.log_text()[-3000:]
    assert sandbox.plugin.client.call("/LogDriver.Capabilities") == {"Cap": {"ReadLogs": True}, "_status": 200}


def send_huge_body(socket_path: Path, path: str, size: int) -> tuple[int, bytes]:
    """POST ``size`` bytes, stopping once the plugin answers or closes; returns the status line's code and body."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(socket_path))
    head = f"POST {path} HTTP/1.1\r\nHost: plugin\r\nContent-Length: {size}\r\n\r\n".encode()
    chunk = b"[" * (1 << 20)
    try:
        sock.sendall(head)
        sent = 0
        while sent < size:
            sent += sock.send(chunk[: size - sent])
    except (BrokenPipeError, ConnectionResetError):
        pass  # the plugin refused the rest, as it should; its answer is waiting to be read
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _content_length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, answer.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in answer else b""


def _content_length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


# --- hand-written bad requests ------------------------------------------------------------------------------


def bad_requests(sandbox: Sandbox) -> list[tuple[str, str, bytes, str]]:
    """(what, path, body, a word the error must contain) for each bad input; GET requests are marked by path."""
    cid = new_container_id()
    fifo_dir = sandbox.plugin.fifo_dir
    start = "/LogDriver.StartLogging"
    read = "/LogDriver.ReadLogs"

    def start_body(file: object, container_id: object = cid) -> bytes:
        info = make_info(cid)
        info["ContainerID"] = container_id
        return json.dumps({"File": file, "Info": info}).encode()

    def read_body(container_id: object) -> bytes:
        info = make_info(cid)
        info["ContainerID"] = container_id
        return json.dumps({"Info": info, "Config": {"Tail": -1, "Follow": False}}).encode()

    cases = [
        ("malformed JSON", start, b'{"File": ', "JSON"),
        ("truncated JSON", read, b'{"Info": {"ContainerID": "ab', "JSON"),
        ("not UTF-8", start, b'{"File": "\xff\xfe"}', "JSON"),
        ("JSON list", start, b"[1, 2, 3]", "object"),
        ("JSON number", read, b"42", "object"),
        ("JSON null", start, b"null", "object"),
        ("JSON string", read, b'"Info"', "object"),
        ("Info is a list", start, json.dumps({"File": str(sandbox.inside_fifo), "Info": []}).encode(), "Info"),
        ("Info is null", start, json.dumps({"File": str(sandbox.inside_fifo), "Info": None}).encode(), "Info"),
        ("File is a number", start, start_body(12), "File"),
        ("File is a list", start, start_body([str(sandbox.inside_fifo)]), "File"),
        ("File is null", start, start_body(None), "File"),
        ("File empty", start, start_body(""), "File"),
        ("File outside the FIFO dir", start, start_body(str(sandbox.outside_fifo)), "File"),
        ("File through ..", start, start_body(f"{fifo_dir}/../canary/outside.fifo"), "File"),
        ("File relative ..", start, start_body("../canary/outside.fifo"), "File"),
        ("File symlink out", start, start_body(str(fifo_dir / "link.fifo")), "File"),
        ("File a folder", start, start_body(str(fifo_dir / "subdir")), "File"),
        ("File a plain file", start, start_body(str(fifo_dir / "plain.txt")), "File"),
        ("File missing", start, start_body(str(fifo_dir / "missing.fifo")), "File"),
        ("File with NUL", start, start_body(str(fifo_dir) + "/a\u0000b"), "File"),
        ("ContainerID ../", start, start_body(str(sandbox.inside_fifo), "../" + cid[3:]), "ContainerID"),
        ("ContainerID with /", start, start_body(str(sandbox.inside_fifo), cid[:30] + "/" + cid[31:]), "ContainerID"),
        ("ContainerID empty", start, start_body(str(sandbox.inside_fifo), ""), "ContainerID"),
        ("ContainerID a number", start, start_body(str(sandbox.inside_fifo), 7), "ContainerID"),
        ("ContainerID upper case", start, start_body(str(sandbox.inside_fifo), cid.upper()), "ContainerID"),
        ("Config a list", start,
         json.dumps({"File": str(sandbox.inside_fifo), "Info": {**make_info(cid), "Config": ["a"]}}).encode(),
         "Config"),
        ("Config value a number", start,
         json.dumps({"File": str(sandbox.inside_fifo), "Info": make_info(cid, config={"max-size": 5})}).encode(),  # type: ignore[dict-item]
         "max-size"),
        ("Info with a 2**70 integer", start,
         json.dumps({"File": str(sandbox.inside_fifo), "Info": {**make_info(cid), "Extra": 2**70}}).encode(), "Info"),
        ("Info of 300 KB", start,
         json.dumps({"File": str(sandbox.inside_fifo), "Info": {**make_info(cid), "Extra": "x" * 300_000}}).encode(),
         "Info"),
        ("JSON nested 500k deep", start, b"[" * 500_000 + b"]" * 500_000, "nested"),
        ("ReadLogs ContainerID ../", read, read_body("../../etc"), "ContainerID"),
        ("ReadLogs ContainerID empty", read, read_body(""), "ContainerID"),
        ("ReadLogs ContainerID null", read, read_body(None), "ContainerID"),
        ("ReadLogs Config a list", read, json.dumps({"Info": make_info(cid), "Config": [1]}).encode(), "Config"),
        ("ReadLogs Tail a string", read,
         json.dumps({"Info": make_info(cid), "Config": {"Tail": "10"}}).encode(), "Tail"),
        ("ReadLogs Tail beyond 64 bits", read,
         json.dumps({"Info": make_info(cid), "Config": {"Tail": 2**70}}).encode(), "Tail"),
        ("ReadLogs Follow a string", read,
         json.dumps({"Info": make_info(cid), "Config": {"Follow": "yes"}}).encode(), "Follow"),
        ("ReadLogs Since a number", read,
         json.dumps({"Info": make_info(cid), "Config": {"Since": 12}}).encode(), "Since"),
        ("ReadLogs Until garbage", read,
         json.dumps({"Info": make_info(cid), "Config": {"Until": "yesterday"}}).encode(), "Until"),
        ("unknown path", "/LogDriver.Explode", b"{}", "404"),
        ("path climbing out", "/../../etc/passwd", b"{}", "404"),
        ("GET StartLogging", "GET " + start, b"", "405"),
        ("GET ReadLogs", "GET " + read, b"", "405"),
        ("POST /stats", "/stats", b"{}", "405"),
    ]
    return cases


def test_bad_requests_get_clear_errors_and_touch_nothing(sandbox: Sandbox, figures: FigureTable) -> None:
    before = sandbox.snapshot()
    tally = Tally()
    for what, path, body, word in bad_requests(sandbox):
        method, _, path = path.rpartition(" ")
        status, answer = post(sandbox, path, body, method=method or "POST")
        tally.record(what, status, answer)
        err = err_of(answer)
        if not (400 <= status < 500 or (status == 200 and err)) or word.lower() not in err.lower():
            tally.unclear.append(f"{what}: {status} {answer[:200]!r}")
        assert_still_serving(sandbox)
    for name in ("StartLogging", "StopLogging", "ReadLogs"):
        status, answer = send_huge_body(sandbox.plugin.socket_path, f"/LogDriver.{name}", HUGE_BODY)
        tally.record(f"64 MiB {name}", status, answer)
        if status != 413 or "413" not in err_of(answer):
            tally.unclear.append(f"64 MiB {name}: {status} {answer[:200]!r}")
        assert_still_serving(sandbox)
    assert not sandbox.outside_fifo_has_a_reader()
    touched = changed_paths(before, sandbox.snapshot())
    figures.add("R4", "HTTP: hand-written bad requests (incl. 3 bodies of 64 MiB)", tally.requests, "—", True)
    figures.add("R4", "HTTP: hand-written bad requests answered 5xx", len(tally.server_errors), "0",
                not tally.server_errors)
    figures.add("R4", "HTTP: hand-written bad requests without a clear error naming the problem",
                len(tally.unclear), "0", not tally.unclear)
    figures.add("R4", "HTTP: files touched outside the data dir (hand-written)", len(touched), "0", not touched)
    assert tally.server_errors == []
    assert tally.unclear == [], "\n".join(tally.unclear)
    assert touched == []
    assert sandbox.plugin.stats()["readers"] == [], "no bad StartLogging may have started a reader"


def test_unknown_loggers_and_containers_are_harmless(sandbox: Sandbox) -> None:
    """StopLogging never fails (dockerd would leak the FIFO); ReadLogs of a container never seen is empty."""
    before = sandbox.snapshot()
    for file in (str(sandbox.plugin.fifo_dir / "never-started"), str(sandbox.outside_fifo), "../../x", 5, None):
        assert sandbox.plugin.client.call("/LogDriver.StopLogging", {"File": file}) == {"_status": 200}
    assert list(sandbox.plugin.client.read_logs(make_info(new_container_id()))) == []
    # Go times reach year 9999, int64 nanoseconds only 2262: such a bound is "never", not an error.
    far = "9999-12-31T23:59:59.999999999Z"
    assert list(sandbox.plugin.client.read_logs(make_info(new_container_id()), since=far, until=far)) == []
    assert changed_paths(before, sandbox.snapshot()) == []
    assert_still_serving(sandbox)


def changed_paths(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


# --- random bodies ------------------------------------------------------------------------------------------

# Edges of the encoders behind the API (msgpack's 64 bits, int64 nanoseconds) besides hypothesis' own values.
EDGE_VALUES = st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 2**70, 1e308, "9999-12-31T23:59:59Z",
                               "0001-01-01T00:00:00Z", "2262-04-11T23:47:16.854775808Z", ""])
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | EDGE_VALUES
ANY_JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def shaped_bodies(sandbox: Sandbox) -> st.SearchStrategy[Any]:
    """Bodies with the protocol's keys but random values, half of them with a valid container id and FIFO, so
    the fuzzing reaches the code behind the first checks."""
    valid_id = st.builds(new_container_id)
    files = st.sampled_from([str(sandbox.inside_fifo), str(sandbox.outside_fifo), str(sandbox.plugin.fifo_dir),
                             str(sandbox.plugin.fifo_dir / "link.fifo"), "../x"]) | ANY_JSON
    config = st.dictionaries(st.sampled_from(["max-size", "max-file", "compress", "Tail", "Follow", "Since",
                                              "Until", "hosts", "index", "bogus"]), ANY_JSON, max_size=3)
    info = st.fixed_dictionaries({"ContainerID": valid_id | ANY_JSON},
                                 optional={"Config": config | ANY_JSON, "ContainerName": ANY_JSON,
                                           "ContainerLabels": ANY_JSON, "ContainerEnv": ANY_JSON,
                                           "Extra": ANY_JSON})
    return st.fixed_dictionaries({}, optional={"File": files, "Info": info | ANY_JSON,
                                               "Config": config | ANY_JSON})


def test_random_json_bodies_never_crash_nor_escape(sandbox: Sandbox, figures: FigureTable) -> None:
    before = sandbox.snapshot()
    tally = Tally()
    bodies = shaped_bodies(sandbox) | ANY_JSON

    @settings(max_examples=RANDOM_BODIES_PER_ENDPOINT * len(ENDPOINTS), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
    def fuzz(endpoint: str, body: Any) -> None:
        raw = json.dumps(body).encode() + b"\n"
        status, answer = post(sandbox, endpoint, raw)
        tally.record(f"{endpoint} {raw[:300]!r}", status, answer)
        assert status < 500, f"{endpoint} {raw[:500]!r} -> {status} {answer[:300]!r}"
        if status != 200 or endpoint != "/LogDriver.ReadLogs":
            reply = json.loads(answer)
            assert isinstance(reply, dict)
            if status >= 400:
                assert reply.get("Err"), answer

    try:
        fuzz()
    finally:
        assert_still_serving(sandbox)
        touched = changed_paths(before, sandbox.snapshot())
        figures.add("R4", "HTTP: random JSON bodies (hypothesis) over StartLogging/StopLogging/ReadLogs",
                    tally.requests, "—", True)
        figures.add("R4", "HTTP: random bodies answered 5xx", len(tally.server_errors), "0", not tally.server_errors)
        figures.add("R4", "HTTP: supervisor crashes", 0 if sandbox.plugin.proc.poll() is None else 1, "0",
                    sandbox.plugin.proc.poll() is None)
        figures.add("R4", "HTTP: files touched outside the data dir (random bodies)", len(touched), "0",
                    not touched)
    assert touched == []
    assert not sandbox.outside_fifo_has_a_reader()
    assert sandbox.plugin.stats()["supervisor"]["restarts"] == 0
