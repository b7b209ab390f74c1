"""Other people's secrets stay private: the data dir is the plugin's only, and holds no environment or command line
that its documents do not carry (the real supervisor, driven as dockerd drives it)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from proto.entry_pb2 import LogEntry
from proto.framing import encode_frame, encode_record
from supervisor.logopts import parse_log_options
from testkit.dockerd_driver import PluginClient, entry, make_info, new_container_id
from testkit.plugin import RunningPlugin, start_plugin, wait_until
from tests.es_standin import EsStandin

ENV_SECRET = "env-s3cret-9f1c"  # an environment value the log-opts do not ask for
ARGS_SECRET = "args-s3cret-77b2"
SHIPPED = "shipped-value-4d0e"  # asked for with env=APP_MODE: goes into every document


def _entries(root: Path) -> Iterator[Path]:
    yield root
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            yield Path(folder) / name


def open_to_others(root: Path) -> list[str]:
    return [f"{p} {stat.filemode(p.lstat().st_mode)}" for p in _entries(root) if p.lstat().st_mode & 0o077]


def files_holding(root: Path, text: str) -> list[str]:
    return [str(p) for p in _entries(root) if p.is_file() and not p.is_symlink() and text.encode() in p.read_bytes()]


def test_the_data_dir_is_private_and_holds_no_secret_of_a_container(plugin: RunningPlugin) -> None:
    with EsStandin() as es:
        fifo = plugin.fifo_dir / "f1"
        os.mkfifo(fifo, 0o700)
        writer = os.open(fifo, os.O_RDWR)
        info = make_info(new_container_id(), config={"hosts": es.url, "env": "APP_MODE", "max-size": "2k",
                                                      "max-file": "3", "compress": "true"})
        info["ContainerEnv"] = ["PATH=/bin", f"DB_PASSWORD={ENV_SECRET}", f"APP_MODE={SHIPPED}"]
        info["ContainerArgs"] = ["--password", ARGS_SECRET]
        try:
            assert plugin.client.call("/LogDriver.StartLogging", {"File": str(fifo), "Info": info}) == {
                "_status": 200}
            for i in range(60):  # over 2k: the file rotates and is gzipped
                os.write(writer, encode_frame(entry(b"line %03d " % i + b"x" * 60)))
            wait_until(lambda: len(es.docs("logs-docker-default")) == 60, 20, message="60 documents")
            assert es.docs("logs-docker-default")[0]["container"]["env"] == {"APP_MODE": SHIPPED}
            folder = plugin.data_dir / "containers" / info["ContainerID"]
            wait_until(lambda: list(folder.glob("container.log.*.gz")), 10, message="a gzipped rotation")
            assert open_to_others(plugin.data_dir) == []
            assert files_holding(plugin.data_dir, ENV_SECRET) == []
            assert files_holding(plugin.data_dir, ARGS_SECRET) == []
        finally:
            os.close(writer)
            fifo.unlink()


def test_a_data_dir_an_older_version_left_open_is_taken_back(short_tmp: Path) -> None:
    data = short_tmp / "data"
    folder = data / "containers" / new_container_id()
    folder.mkdir(parents=True)
    (folder / "info.json").write_text("{}")
    for path in (data, data / "containers", folder):
        path.chmod(0o755)
    (folder / "info.json").chmod(0o644)
    plugin = start_plugin(short_tmp)
    try:
        assert open_to_others(data) == []
        assert "now private to the plugin" in plugin.log_text()
        assert PluginClient(plugin.socket_path).request("/stats", None, method="GET")[0] == 200
    finally:
        plugin.stop()


def test_files_an_older_version_wrote_lose_the_secrets_on_start(short_tmp: Path) -> None:
    """A stopped container still owing lines to Elasticsearch: its shipping config, written by an older version
    with the whole Info, is rewritten with only what the plugin reads."""
    container_id = new_container_id()
    data = short_tmp / "data"
    folder = data / "containers" / container_id
    folder.mkdir(parents=True)
    line = LogEntry(source="stdout", time_nano=1, line=b"owed to Elasticsearch\n")
    (folder / "container.log").write_bytes(encode_record(line.SerializeToString()))
    options = dict(parse_log_options({"hosts": "http://127.0.0.1:9"}).values)  # nobody listens: stays owed
    info = make_info(container_id)
    info["ContainerEnv"] = [f"DB_PASSWORD={ENV_SECRET}"]
    (data / "shipper").mkdir()
    config = data / "shipper" / f"{container_id}.json"
    config.write_text(json.dumps({"info": info, "options": options}))
    plugin = start_plugin(short_tmp)
    try:
        wait_until(lambda: ENV_SECRET not in config.read_text(), 20, message="the shipping config rewritten")
        assert json.loads(config.read_text())["info"]["ContainerID"] == container_id
    finally:
        plugin.stop()
