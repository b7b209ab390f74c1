"""The shipper's own files (shipper/main.py): output configs of containers still to ship, and the agent id."""

from __future__ import annotations

import logging
import socket
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipper.main import AGENT_ID_NAME, ShipperProcess

CID = "ab" * 32


@pytest.fixture
def control() -> Iterator[socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield ours
    ours.close()
    theirs.close()


def test_configs_are_kept_owner_only_and_read_back(tmp_path: Path, control: socket.socket) -> None:
    shipper = ShipperProcess(tmp_path, control)
    shipper._save_config(CID, {"ContainerID": CID}, {"hosts": "http://es:9200", "password": "s3cret"})
    path = tmp_path / "shipper" / f"{CID}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert shipper._load_configs() == [(CID, {"ContainerID": CID}, {"hosts": "http://es:9200", "password": "s3cret"})]


@pytest.mark.parametrize("content", [b"", b'{"info": {"ContainerID": "x"}, "opt', b'{"info": [], "options": {}}',
                                     b"null"])
def test_a_damaged_config_is_said_once_and_kept(tmp_path: Path, control: socket.socket, content: bytes,
                                                caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "shipper"
    folder.mkdir()
    (folder / f"{CID}.json").write_bytes(content)
    (folder / f"{'cd' * 32}.json").write_bytes(b'{"info": {}, "options": {"hosts": "http://es:9200"}}')
    shipper = ShipperProcess(tmp_path, control)
    with caplog.at_level(logging.ERROR, "elp.shipper"):
        assert shipper._load_configs() == [("cd" * 32, {}, {"hosts": "http://es:9200"})]
    assert len(caplog.records) == 1 and CID[:12] in caplog.records[0].getMessage()
    assert (folder / f"{CID}.json").read_bytes() == content  # not thrown away: a ShipContainer rewrites it


def test_the_agent_id_is_kept(tmp_path: Path, control: socket.socket) -> None:
    first = ShipperProcess(tmp_path, control).agent_id
    assert ShipperProcess(tmp_path, control).agent_id == first == str(uuid.UUID(first))
    assert stat.S_IMODE((tmp_path / AGENT_ID_NAME).stat().st_mode) == 0o600


@pytest.mark.parametrize("content", [b"", b"\0\0\0", b"not-a-uuid"])
def test_a_damaged_agent_id_is_said_and_replaced(tmp_path: Path, control: socket.socket, content: bytes,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / AGENT_ID_NAME).write_bytes(content)
    with caplog.at_level(logging.WARNING, "elp.shipper"):
        agent_id = ShipperProcess(tmp_path, control).agent_id
    assert str(uuid.UUID(agent_id)) == agent_id
    assert (tmp_path / AGENT_ID_NAME).read_text() == agent_id
    assert len(caplog.records) == 1
