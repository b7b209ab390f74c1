"""supervisor/registry.py: loggers re-attached after a restart, also when their record was damaged."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from localstore.paths import LOG_NAME, container_dir
from proto import statefile
from proto.framing import marker_record
from supervisor.registry import LoggerRecord, LoggerRegistry

CID = "ab" * 32
FIFO = "cd" * 32


def registry(tmp_path: Path) -> LoggerRegistry:
    return LoggerRegistry(tmp_path / "data" / "loggers", tmp_path / "fifos", tmp_path / "data")


def info(config: dict[str, str] | None = None) -> dict[str, object]:
    return {"Config": config or {}, "ContainerID": CID, "ContainerName": "/web", "ContainerLabels": {"a": "b"}}


def test_round_trip_owner_only(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    record = LoggerRecord(str(tmp_path / "fifos" / FIFO), info({"mode": "blocking"}))
    reg.save(record)
    assert reg.load() == [record]
    assert stat.S_IMODE((reg.folder / f"{FIFO}.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(reg.folder.stat().st_mode) == 0o700


def test_a_record_is_written_atomically_without_waiting_for_the_disk(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Every `docker logs` of a stopped container starts a logger: two fsyncs per record were ~5 ms of its
    # StartLogging. A plugin crash keeps a renamed file; a power cut also ends every FIFO's writer (dockerd).
    synced: list[int] = []
    monkeypatch.setattr(statefile.os, "fsync", synced.append)
    reg = registry(tmp_path)
    record = LoggerRecord(str(tmp_path / "fifos" / FIFO), info({"mode": "blocking"}))
    reg.save(record)
    assert synced == []
    assert reg.load() == [record] and not list(reg.folder.glob("*.tmp"))


def test_a_record_of_the_previous_format_loads(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    reg.folder.mkdir(parents=True)
    (reg.folder / f"{FIFO}.json").write_text(json.dumps({"File": "/run/x/" + FIFO, "Info": info()}))
    assert reg.load() == [LoggerRecord("/run/x/" + FIFO, info())]


def test_a_truncated_record_is_rebuilt_from_what_is_left(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reg = registry(tmp_path)
    reg.save(LoggerRecord(str(tmp_path / "fifos" / FIFO), info({"mode": "blocking", "max-size": "1m"})))
    path = reg.folder / f"{FIFO}.json"
    text = path.read_bytes()
    path.write_bytes(text[: text.index(b'"ContainerName"')])  # a power cut in the middle of the Info
    with caplog.at_level(logging.ERROR, "elp.supervisor"):
        (record,) = reg.load()
    assert record.fifo_path == str(tmp_path / "fifos" / FIFO)
    assert record.info == {"ContainerID": CID, "Config": {"mode": "blocking", "max-size": "1m"},
                           "ContainerLabels": {"a": "b"}}
    assert len(caplog.records) == 1 and "re-attaching" in caplog.records[0].getMessage()


def test_a_record_cut_in_its_labels_keeps_the_log_opts(tmp_path: Path) -> None:
    # The labels come right after the log-opts: co.elastic.logs/enabled=false must survive a record cut after them
    # (re-attached without it, a container meant to log locally only would start shipping).
    reg = registry(tmp_path)
    data = info({"hosts": "es:9200"}) | {"ContainerLabels": {"co.elastic.logs/enabled": "false", "z": "y"}}
    reg.save(LoggerRecord(str(tmp_path / "fifos" / FIFO), data))
    path = reg.folder / f"{FIFO}.json"
    text = path.read_bytes()
    path.write_bytes(text[: text.index(b'"ContainerName"')])
    assert reg.load()[0].info["ContainerLabels"] == {"co.elastic.logs/enabled": "false", "z": "y"}
    path.write_bytes(text[: text.index(b'"z"')])  # cut inside the labels: the log-opts are still known
    assert reg.load()[0].info == {"ContainerID": CID, "Config": {"hosts": "es:9200"}}


@pytest.mark.parametrize("content", [b"", b"\0" * 300, b'{"File": 3, "Info": []}', b"[]"])
def test_an_emptied_record_is_rebuilt_from_the_local_stores_batch_markers(tmp_path: Path, content: bytes) -> None:
    reg = registry(tmp_path)
    reg.folder.mkdir(parents=True)
    (reg.folder / f"{FIFO}.json").write_bytes(content)
    folder = container_dir(tmp_path / "data", CID)
    folder.mkdir(parents=True)
    (folder / LOG_NAME).write_bytes(marker_record("other", 5) + marker_record(FIFO, 7))
    other = container_dir(tmp_path / "data", "ef" * 32)
    other.mkdir()
    (other / LOG_NAME).write_bytes(marker_record("other", 9))
    assert reg.load() == [LoggerRecord(str(tmp_path / "fifos" / FIFO), {"ContainerID": CID, "Config": {}})]


def test_a_record_nothing_can_rebuild_is_kept_aside_and_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reg = registry(tmp_path)
    reg.folder.mkdir(parents=True)
    (reg.folder / f"{FIFO}.json").write_bytes(b"")
    with caplog.at_level(logging.ERROR, "elp.supervisor"):
        assert reg.load() == []
    assert [p.name for p in reg.folder.iterdir()] == [f"{FIFO}.json.corrupt"]
    assert len(caplog.records) == 1 and "not re-attached" in caplog.records[0].getMessage()
    assert reg.load() == []  # said once, not at every start
