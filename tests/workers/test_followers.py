"""A `docker logs` (-f or not) gets every line written before it at once; containers nobody reads batch longer."""

from __future__ import annotations

import threading
from typing import Any

from proto.entry_pb2 import LogEntry
from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, wait_until
from workers.main import FOLLOW_WAIT, QUIET_WAIT


def window_ms(plugin: RunningPlugin, lg: FakeLogger) -> Any:
    readers = [r for r in plugin.stats()["readers"] if r["container_id"] == lg.container_id]
    return readers[0].get("batch_window_ms") if readers else None


def test_a_follower_shortens_the_batch_window_while_it_follows(plugin: RunningPlugin) -> None:
    quiet, follow = round(QUIET_WAIT * 1000), round(FOLLOW_WAIT * 1000)
    lg = plugin.logger()
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"before"))
    wait_until(lambda: window_ms(plugin, lg) == quiet, message=f"the reader to report a {quiet} ms window")

    seen: list[LogEntry] = []
    stream = plugin.client.read_logs(lg.info, follow=True, timeout=30)
    follower = threading.Thread(target=lambda: seen.extend(stream), daemon=True)
    follower.start()
    wait_until(lambda: window_ms(plugin, lg) == follow, message=f"a {follow} ms window while followed")
    lg.write(entry(b"while followed"))
    wait_until(lambda: [e.line for e in seen] == [b"before\n", b"while followed\n"], message="the follower's lines")

    lg.stop()  # ends the follow stream (the container is gone)
    follower.join(30)
    assert not follower.is_alive()


def test_a_shorter_flush_interval_bounds_the_quiet_window(plugin: RunningPlugin) -> None:
    lg = plugin.logger(config={"hosts": "http://127.0.0.1:9", "flush_interval": "200ms"})
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"x"))
    wait_until(lambda: window_ms(plugin, lg) == 200, message="a 200 ms window (the logger's flush_interval)")


def test_the_window_returns_to_quiet_when_the_follower_leaves(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"x"))
    stream = plugin.client.read_logs(lg.info, follow=True, timeout=30)
    assert next(stream).line == b"x\n"
    wait_until(lambda: window_ms(plugin, lg) == round(FOLLOW_WAIT * 1000), message="the short window")
    stream.close()  # the follower goes away (docker logs -f interrupted)
    wait_until(lambda: window_ms(plugin, lg) == round(QUIET_WAIT * 1000), message="the quiet window again")


def test_a_plain_read_of_a_running_container_has_the_line_just_written(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"first"))
    wait_until(lambda: [e.line for e in plugin.client.read_logs(lg.info)] == [b"first\n"], message="the first line")
    lg.write(entry(b"just now"))  # sits in the reader's open batch, whose window is a second
    assert [e.line for e in plugin.client.read_logs(lg.info)] == [b"first\n", b"just now\n"]
