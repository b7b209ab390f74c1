"""The real supervisor, driven exactly as dockerd drives it (testkit/dockerd_driver.py)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import threading
import time
from pathlib import Path

from proto.entry_pb2 import LogEntry
from testkit.dockerd_driver import FakeLogger, entry, make_info, new_container_id, split_line
from testkit.plugin import RunningPlugin, wait_until
from tests.conftest import reader_gone
from tests.es_standin import EsStandin


def lines_of(entries: list[LogEntry]) -> list[tuple[str, bytes]]:
    return [(e.source, e.line) for e in entries]


def stored_records(plugin: RunningPlugin) -> int:
    return int(plugin.stats()["localstore"].get("records_total", 0))


def wait_stored(plugin: RunningPlugin, n: int) -> None:
    wait_until(lambda: stored_records(plugin) >= n, 10, message=f"{n} records in the local store")


def test_capabilities_and_activate(plugin: RunningPlugin) -> None:
    assert plugin.client.call("/LogDriver.Capabilities") == {"Cap": {"ReadLogs": True}, "_status": 200}
    assert plugin.client.call("/Plugin.Activate") == {"Implements": ["LogDriver"], "_status": 200}


def test_lines_are_stored_and_read_back_with_newlines(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"hello"), entry(b"  indented stays indented"), entry(b"oops", source="stderr"), entry(b""))
    wait_stored(plugin, 4)
    got = list(plugin.client.read_logs(lg.info))
    assert lines_of(got) == [
        ("stdout", b"hello\n"), ("stdout", b"  indented stays indented\n"), ("stderr", b"oops\n"), ("stdout", b"\n"),
    ]
    assert lg.stop() == {"_status": 200}
    folder = plugin.data_dir / "containers" / lg.container_id
    assert (folder / "container.log").stat().st_size > 0
    assert (folder / "info.json").exists()


def test_stop_logging_replies_before_eof_and_reader_drains(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    lg.write(*(entry(b"line %d" % i) for i in range(1000)))
    # StopLogging comes while dockerd still holds the FIFO open: it must answer at once.
    started = time.monotonic()
    reply = plugin.client.call("/LogDriver.StopLogging", {"File": str(lg.path)})
    assert reply == {"_status": 200}
    assert time.monotonic() - started < 2
    lg.write(entry(b"written after StopLogging, before close"))
    lg.close()
    wait_until(lambda: reader_gone(plugin, lg), message="the reader to reach EOF and exit")
    got = list(plugin.client.read_logs(lg.info))
    assert len(got) == 1001
    assert got[-1].line == b"written after StopLogging, before close\n"


def test_stop_logging_never_errors(plugin: RunningPlugin) -> None:
    assert plugin.client.call("/LogDriver.StopLogging", {"File": "/nonexistent"}) == {"_status": 200}
    status, _ = plugin.client.request("/LogDriver.StopLogging", b"not json")
    assert status == 200


def test_tail_since_until(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    base = 1_700_000_000_000_000_000
    lg.write(*(entry(b"n%d" % i, time_nano=base + i * 1_000_000_000) for i in range(10)))
    wait_stored(plugin, 10)
    read = plugin.client.read_logs
    assert [e.line for e in read(lg.info, tail=3)] == [b"n7\n", b"n8\n", b"n9\n"]
    assert list(read(lg.info, tail=0)) == []
    assert len(list(read(lg.info, tail=100))) == 10
    # 2023-11-14T22:13:20Z is base; +5 s, written in another zone, is n5.
    since = "2023-11-15T00:13:25+02:00"
    assert [e.line for e in read(lg.info, since=since)][:2] == [b"n5\n", b"n6\n"]
    until = "2023-11-14T22:13:22.000000000Z"
    assert [e.line for e in read(lg.info, until=until)] == [b"n0\n", b"n1\n", b"n2\n"]
    assert [e.line for e in read(lg.info, tail=4, until=until)] == []
    assert [e.time_nano for e in read(lg.info, tail=1)] == [base + 9_000_000_000]


def test_follow_streams_live_lines_and_ends_at_eof(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    lg.write(entry(b"before"))
    wait_stored(plugin, 1)
    got: list[bytes] = []
    done = threading.Event()

    def follow() -> None:
        for e in plugin.client.read_logs(lg.info, follow=True, timeout=30):
            got.append(e.line)
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    wait_until(lambda: got == [b"before\n"], message="history before following")
    lg.write(entry(b"live 1"), entry(b"live 2"))
    wait_until(lambda: len(got) == 3, message="live lines")
    assert not done.is_set()
    lg.write(entry(b"last"))
    lg.stop()
    assert done.wait(10), "follow must end when the container's logger reaches EOF"
    assert got == [b"before\n", b"live 1\n", b"live 2\n", b"last\n"]


def test_follow_with_tail_zero_only_new_lines(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    lg.write(entry(b"old"))
    wait_stored(plugin, 1)
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.extend(e.line for e in plugin.client.read_logs(
        lg.info, tail=0, follow=True, timeout=30)), daemon=True)
    t.start()
    wait_until(lambda: plugin.stats()["localstore"]["read_streams"] == 1, message="the follower to attach")
    lg.write(entry(b"new"))
    lg.stop()
    t.join(10)
    assert got == [b"new\n"]


def temporary_logger_of_a_stopped_container(plugin: RunningPlugin) -> FakeLogger:
    """A container that logged one line and stopped; then what dockerd does for `docker logs` on it: a fresh logger
    (StartLogging) that never gets data."""
    lg = plugin.logger(name="stopped")
    lg.start()
    lg.write(entry(b"from the run"))
    lg.stop()
    wait_until(lambda: reader_gone(plugin, lg), message="the reader to exit")
    temp = FakeLogger(plugin.client, plugin.fifo_dir, container_id=lg.container_id, name="stopped")
    assert temp.start() == {"_status": 200}
    return temp


def test_stopped_container_read_through_temporary_logger(plugin: RunningPlugin) -> None:
    temp = temporary_logger_of_a_stopped_container(plugin)
    assert [e.line for e in plugin.client.read_logs(temp.info)] == [b"from the run\n"]
    temp.stop()
    wait_until(lambda: reader_gone(plugin, temp), message="the temporary reader to exit")


def test_silent_logger_closes_without_a_reader(plugin: RunningPlugin) -> None:
    temp = temporary_logger_of_a_stopped_container(plugin)
    (idle,) = plugin.stats()["readers"]
    assert idle["state"] == "idle" and idle["pid"] is None, "no reader before the FIFO has data"
    got: list[bytes] = []
    # A follower that counts the temporary logger as open ends only when the local store learns it closed.
    follower = threading.Thread(target=lambda: got.extend(e.line for e in plugin.client.read_logs(
        temp.info, follow=True, timeout=30)), daemon=True)
    follower.start()
    wait_until(lambda: plugin.stats()["localstore"]["read_streams"] == 1, message="the follower to attach")
    temp.stop()
    follower.join(10)
    assert not follower.is_alive() and got == [b"from the run\n"]
    wait_until(lambda: not plugin.stats()["readers"], message="the silent logger to be forgotten")
    assert f"reader of {temp.container_id[:12]} done" in plugin.log_text()
    assert plugin.log_text().count(f"reader of {temp.container_id[:12]} done") == 1, "only the first logger's"
    assert not any((plugin.data_dir / "loggers").iterdir())


def test_reader_forked_on_first_data_gets_every_line(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    assert plugin.stats()["readers"][0]["state"] == "idle"
    # Far more than the pipe holds: the writer blocks until the reader forked on the first byte drains it.
    lg.write(*(entry(b"line %06d" % i) for i in range(20000)))
    wait_stored(plugin, 20000)
    assert plugin.stats()["readers"][0]["state"] == "running"
    lg.stop()
    wait_until(lambda: reader_gone(plugin, lg), message="the reader to exit")
    assert [e.line for e in plugin.client.read_logs(lg.info)] == [b"line %06d\n" % i for i in range(20000)]


def test_unknown_container_reads_empty(plugin: RunningPlugin) -> None:
    assert list(plugin.client.read_logs(make_info(new_container_id()))) == []


def test_three_containers_at_once_stay_apart(plugin: RunningPlugin) -> None:
    loggers = [plugin.logger(name=f"c{i}") for i in range(3)]
    for lg in loggers:
        assert lg.start() == {"_status": 200}
    for round_ in range(50):
        for i, lg in enumerate(loggers):
            lg.write(entry(b"c%d-%d" % (i, round_)))
    for lg in loggers:
        lg.stop()
    wait_stored(plugin, 150)
    for i, lg in enumerate(loggers):
        assert [e.line for e in plugin.client.read_logs(lg.info)] == [b"c%d-%d\n" % (i, r) for r in range(50)]


def test_long_line_parts_come_back_as_one_line(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    long_line = bytes(range(256)).replace(b"\n", b"_") * 400  # 100 KiB
    parts = split_line(long_line, time.time_ns())
    lg.write(*parts, entry(b"after"))
    # output that ends without a newline: a partial chunk with last=false and nothing after it
    lg.write(entry(b"no newline at exit", partial_id=secrets.token_hex(32), ordinal=1, last=False))
    lg.stop()
    wait_until(lambda: reader_gone(plugin, lg), message="the reader to exit")
    got = list(plugin.client.read_logs(lg.info))
    printed = b"".join(e.line for e in got)
    assert printed == long_line + b"\nafter\nno newline at exit"
    wait_until(lambda: stored_records(plugin) == len(parts) + 2, message="the store's counters")


def test_unknown_log_opt_is_refused_by_name(plugin: RunningPlugin) -> None:
    lg = plugin.logger(config={"max-size": "10m", "no-such-option": "1"})
    reply = lg.start()
    assert "no-such-option" in reply["Err"]
    bad = plugin.logger(config={"max-file": "many"})
    assert "max-file" in bad.start()["Err"]


def test_docker_and_elasticsearch_options_are_accepted_and_take_effect(plugin: RunningPlugin) -> None:
    """dockerd's own options (mode, max-buffer-size, cache-*) are accepted and left to dockerd; ours change the
    documents: the labels and environment variables asked for (and only those), and the formatted index."""
    with EsStandin() as es:
        config = {"mode": "non-blocking", "max-buffer-size": "4m", "cache-disabled": "false",
                  "labels": "com.example.team,no.such.label", "env": "PATH", "env-regex": "^LANG",
                  "tag": "{{.Name}}", "hosts": es.url, "index": "logs-%{[container.name]}-%{+yyyy.MM.dd}",
                  "timeout": "30s"}
        lg = plugin.logger(name="opts-1", config=config)
        assert lg.start() == {"_status": 200}
        ts = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
        lg.write(entry(b"with options", time_nano=ts))
        target = "logs-opts-1-2023.11.14"
        wait_until(lambda: es.docs(target), 20, message=f"a document in {target}")
        (doc,) = es.docs(target)
        assert doc["message"] == "with options"
        assert doc["container"]["labels"] == {"com_example_team": "web"}
        assert doc["container"]["env"] == {"PATH": "/bin"}  # LANG is not in the container's environment
        assert es.count() == 1
        lg.stop()


def test_start_logging_refuses_files_outside_the_fifo_dir(plugin: RunningPlugin, short_tmp: Path) -> None:
    outside = short_tmp / "elsewhere"
    os.mkfifo(outside)
    cid = new_container_id()
    for bad in (str(outside), str(plugin.fifo_dir / ".." / "elsewhere"), "", "relative"):
        reply = plugin.client.call("/LogDriver.StartLogging", {"File": bad, "Info": make_info(cid)})
        assert reply.get("Err"), bad
    plain = plugin.fifo_dir / "plainfile"
    plain.write_text("x")
    reply = plugin.client.call("/LogDriver.StartLogging", {"File": str(plain), "Info": make_info(cid)})
    assert "not a FIFO" in reply["Err"]
    reply = plugin.client.call("/LogDriver.StartLogging",
                               {"File": str(plain), "Info": make_info("../../etc")})
    assert "ContainerID" in reply["Err"]


def test_read_logs_refuses_bad_container_ids(plugin: RunningPlugin) -> None:
    status, body = plugin.client.request(
        "/LogDriver.ReadLogs", b'{"Info": {"ContainerID": "../../../etc"}, "Config": {}}\n')
    assert status == 400 and b"ContainerID" in body
    status, body = plugin.client.request("/LogDriver.ReadLogs", b"[1, 2]")
    assert status == 400 and b"Err" in body


def test_unknown_path_answers_json(plugin: RunningPlugin) -> None:
    status, body = plugin.client.request("/LogDriver.Nope", b"{}")
    assert status == 404 and body.startswith(b'{"Err"')


def test_corrupt_stream_never_blocks_the_container(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    lg.write(entry(b"good 1"))
    lg.write_raw(b"\x00\x00\x00\x05\xff\xff\xff\xff\xff")  # a frame whose body is not a LogEntry
    lg.write(entry(b"good 2"))
    lg.write_raw(b"\xff\xff\xff\xff" + b"z" * 100)  # an absurd length
    # The container keeps writing far more than a pipe holds: this would hang if the reader stopped.
    big = [entry(b"x" * 1000) for _ in range(3000)]
    lg.write(*big)
    lg.stop()
    wait_until(lambda: reader_gone(plugin, lg), message="the reader to exit")
    lines = [e.line for e in plugin.client.read_logs(lg.info)]
    # The reader resynchronises on the next frame after the absurd length: nothing valid is lost.
    assert lines == [b"good 1\n", b"good 2\n"] + [b"x" * 1000 + b"\n"] * 3000
    text = plugin.log_text()
    assert "corrupt log stream" in text
    assert re.search(r"done \(eof\): 3002 lines, \d+ bytes, 2 frames discarded", text), text


def test_sigterm_stops_everything_quickly(plugin: RunningPlugin) -> None:
    loggers = [plugin.logger(name=f"s{i}") for i in range(3)]
    for lg in loggers:
        lg.start()
        lg.write(entry(b"before shutdown"))
    wait_stored(plugin, 3)
    pids = [r["pid"] for r in plugin.stats()["readers"]] + [plugin.stats()["localstore"]["pid"]]
    started = time.monotonic()
    assert plugin.stop() == 0
    assert time.monotonic() - started < 5
    for pid in pids:
        assert _exited(pid), f"child {pid} still runs after the supervisor stopped"
    for lg in loggers:
        lg.close()


def _exited(pid: int) -> bool:
    """True when the process is gone or only a zombie left for init to reap; any other error fails the test."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # The state follows the command name, which is in parentheses and may itself hold spaces or ")".
    return stat[stat.rindex(")") + 2] == "Z"


def test_supervisor_forks_without_threads(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    lg.write(entry(b"x"))
    wait_stored(plugin, 1)
    assert list(plugin.client.read_logs(lg.info))
    assert len(os.listdir(f"/proc/{plugin.proc.pid}/task")) == 1
    lg.stop()


def test_crashed_reader_is_respawned_on_its_fifo(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    lg.write(entry(b"one"))
    wait_stored(plugin, 1)
    (reader,) = plugin.stats()["readers"]
    os.kill(reader["pid"], signal.SIGKILL)
    wait_until(lambda: (r := plugin.stats()["readers"]) and r[0]["pid"] not in (None, reader["pid"]),
               message="a new reader")
    lg.write(entry(b"two"))
    wait_stored(plugin, 2)
    assert [e.line for e in plugin.client.read_logs(lg.info)] == [b"one\n", b"two\n"]
    assert plugin.stats()["readers"][0]["restarts"] == 1
    assert "killed by SIGKILL" in plugin.log_text()
    lg.stop()


def test_killed_localstore_is_respawned_and_storing_goes_on(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    lg.write(entry(b"before"))
    wait_stored(plugin, 1)
    old = plugin.stats()["localstore"]["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: plugin.stats()["localstore"]["pid"] not in (None, old), message="a new local store")
    lg.write(entry(b"after"))
    wait_until(lambda: [e.line for e in plugin.client.read_logs(lg.info)] == [b"before\n", b"after\n"],
               message="lines written after the respawn to be stored")
    assert plugin.stats()["localstore"]["restarts"] == 1
    lg.stop()
    wait_until(lambda: reader_gone(plugin, lg), message="the reader to exit")


def test_rotation_options_reach_the_store(plugin: RunningPlugin) -> None:
    lg = plugin.logger(config={"max-size": "2k", "max-file": "3", "compress": "true"})
    assert lg.start() == {"_status": 200}
    for i in range(100):
        lg.write(entry(b"line %03d " % i + b"x" * 80))
    wait_stored(plugin, 100)
    # ~11 KB of records in 2 kB files: several rotations, counted by the store and for the container.
    rotations = wait_until(lambda: (n := plugin.stats()["localstore"]["rotations_total"]) >= 4 and n, 10,
                           message="the rotations counted")
    assert plugin.stats()["readers"][0]["store"]["rotations_total"] == rotations
    lg.stop()
    wait_until(lambda: reader_gone(plugin, lg), message="the reader to exit")
    # A stopped container is released from the store's memory; a total never goes down with it.
    wait_until(lambda: plugin.stats()["localstore"]["containers"] == 0, message="the stopped container released")
    assert plugin.stats()["localstore"]["rotations_total"] == rotations
    folder = plugin.data_dir / "containers" / lg.container_id
    wait_until(lambda: sorted(p.name for p in folder.glob("container.log*")) ==
               ["container.log", "container.log.1.gz", "container.log.2.gz"], message="rotated, compressed files")
    lines = [e.line for e in plugin.client.read_logs(lg.info)]
    # Only what the three files hold is left, and it is the newest lines, in order, each once.
    assert lines == [b"line %03d " % i + b"x" * 80 + b"\n" for i in range(100 - len(lines), 100)]
    assert 20 < len(lines) < 70
    assert [e.line for e in plugin.client.read_logs(lg.info, tail=30)] == lines[-30:]


def test_destroy_logs_on_stop(short_tmp: Path) -> None:
    from testkit.plugin import start_plugin

    plugin = start_plugin(short_tmp, env={"DESTROY_LOGS_ON_STOP": "true"})
    try:
        lg = plugin.logger()
        lg.start()
        lg.write(entry(b"short-lived"))
        wait_stored(plugin, 1)
        folder = plugin.data_dir / "containers" / lg.container_id
        assert folder.exists()
        lg.stop()
        wait_until(lambda: not folder.exists(), message="the container's folder to be deleted")
        assert list(plugin.client.read_logs(lg.info)) == []
        assert "deleted its local logs" in plugin.log_text()
    finally:
        assert plugin.stop() == 0


def test_docker_logs_right_after_exit_shows_every_line(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    lg.write(*(entry(b"line %d" % i) for i in range(20000)))
    lg.stop()  # the reader is still draining the FIFO when docker logs comes in
    temp = FakeLogger(plugin.client, plugin.fifo_dir, container_id=lg.container_id)
    temp.start()
    got = list(plugin.client.read_logs(temp.info, timeout=30))
    temp.stop()
    assert len(got) == 20000
    assert got[-1].line == b"line 19999\n"


def test_crash_loop_backs_off(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    lg.write(entry(b"wake"))  # the first reader is forked on the first data
    for _ in range(4):
        pid = wait_until(lambda: (r := plugin.stats()["readers"]) and r[0]["pid"], 20, message="a reader")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda p=pid: f"(pid {p}) was killed" in plugin.log_text(), message="the death noticed")
    delays = [float(d) for d in re.findall(r"restart \d+ in ([\d.]+)s", plugin.log_text())]
    assert delays == [0.0, 0.5, 1.0, 2.0], "the first restart is immediate, then the delay doubles"
    lg.stop()
