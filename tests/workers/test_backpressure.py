"""A container writing faster than its reader decodes: every line stored, none dropped (the reader holds back)."""

from __future__ import annotations

import re

from proto.framing import encode_frame
from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until

LINES = 600_000


def test_a_writer_faster_than_the_reader_loses_nothing(plugin: RunningPlugin) -> None:
    lg = plugin.logger(config={"max-size": "10g"})
    assert lg.start() == {"_status": 200}
    chunk = b"".join(encode_frame(entry(b"y" * 99)) for _ in range(10_000))  # ~1.2 MB a write: the pipe stays full
    for _ in range(LINES // 10_000):
        lg.write_raw(chunk)
    lg.stop()
    wait_until(lambda: not plugin.stats()["readers"], 120, message="the reader to finish")
    log = plugin.data_dir / "containers" / lg.container_id / "container.log"
    per_line = len(encode_frame(entry(b"y" * 99 + b"\n"))) + 4  # stored: the frame with its newline, length after
    assert re.search(rf"done \(eof\): {LINES} lines, .* 0 batches dropped", plugin.log_text())
    assert log.stat().st_size >= LINES * per_line
    assert sum(1 for _ in plugin.client.read_logs(lg.info, timeout=120)) == LINES
