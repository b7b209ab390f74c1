"""R13: other people's secrets stay private, on a real dockerd with the plugin built from this tree.

Containers run with secrets in their environment and on their command line, one shipping (with ``env`` asking for
one variable, rotation and compression on) and one only stored locally. Then every file and folder under the data
dir is scanned: none may be readable, writable or searchable by group or others, and no environment value the
log-opts did not ask for, nor the command line, may appear in any file (gzipped rotations decompressed). The one
variable asked for goes into the documents, where it belongs.
"""

from __future__ import annotations

import gzip
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.docker_fixtures import DockerEngine, Plugin, new_name, wait_until
from tests.es_standin import EsStandin
from tests.reliability.conftest import FigureTable, scale

INDEX = "logs-docker-default"


def _entries(root: Path) -> Iterator[tuple[Path, os.stat_result, bytes]]:
    """Every entry with its mode and (for a regular file) its content. A logger record that dockerd's StopLogging
    removes while the scan runs (``docker logs`` of a stopped container starts and stops a logger) is skipped."""
    paths = [root]
    for folder, dirs, files in os.walk(root):
        paths.extend(Path(folder) / name for name in dirs + files)
    for path in paths:
        try:
            mode = path.lstat()
            content = _content(path) if stat.S_ISREG(mode.st_mode) else b""
        except FileNotFoundError:
            continue
        yield path, mode, content


def _content(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            return data + gzip.decompress(data)
        except (OSError, EOFError):
            return data  # still being written: the next scan reads it whole
    return data


def test_the_data_dir_is_private_and_holds_no_secret(docker_engine: DockerEngine, docker_plugin: Plugin,
                                                     busybox_image: str, names: list[str],
                                                     figures: FigureTable) -> None:
    lines = scale(3000, 30000)  # about 40 bytes a record: several rotations at max-size=20k
    tag = uuid.uuid4().hex[:10]
    env_secret, args_secret, local_secret, asked = (f"r13-env-{tag}", f"r13-args-{tag}", f"r13-local-{tag}",
                                                    f"r13-asked-{tag}")
    with EsStandin() as es:  # on the host's 127.0.0.1: the plugin uses the host network
        shipping, local = new_name(names), new_name(names)
        run = docker_engine.docker(
            "run", "--name", shipping, "--log-driver", docker_plugin.driver,
            "--log-opt", f"hosts={es.url}", "--log-opt", "flush_interval=200ms", "--log-opt", "env=APP_MODE",
            "--log-opt", "max-size=20k", "--log-opt", "max-file=100", "--log-opt", "compress=true",
            "-e", f"DB_PASSWORD={env_secret}", "-e", f"APP_MODE={asked}",
            busybox_image, "sh", "-c", f"seq 1 {lines}", args_secret, timeout=120)
        assert run.returncode == 0, run.stderr
        run = docker_engine.docker(
            "run", "--name", local, "--log-driver", docker_plugin.driver, "-e", f"TOKEN={local_secret}",
            busybox_image, "sh", "-c", "echo stored only", args_secret, timeout=120)
        assert run.returncode == 0, run.stderr
        wait_until(lambda: len(es.docs(INDEX)) >= lines, 60, message=f"{lines} documents")
        docs = es.docs(INDEX)
        assert docker_engine.docker("logs", local, check=True).stdout == "stored only\n"

    root = docker_plugin.store_dir
    assert list(root.glob("containers/*/container.log.*.gz")), "the scan must cover gzipped rotations"
    entries = list(_entries(root))
    open_to_others = [f"{p.relative_to(root.parent)} {stat.filemode(mode.st_mode)}" for p, mode, _ in entries
                      if mode.st_mode & 0o077]
    secrets = (env_secret, args_secret, local_secret)
    holding = [f"{p.relative_to(root.parent)}: {s}" for p, _, content in entries for s in secrets
               if s.encode() in content]
    asked_in_docs = all(d["container"].get("env") == {"APP_MODE": asked} for d in docs)
    figures.add("R13", f"entries under the data dir open to group or others (of {len(entries)})",
                len(open_to_others), "0", not open_to_others)
    figures.add("R13", "files holding an environment value not asked for, or the command line "
                f"({len(entries)} entries scanned, .gz decompressed)", len(holding), "0", not holding)
    figures.add("R13", "documents carrying the one environment variable asked for (env=APP_MODE)",
                f"{sum(d['container'].get('env') == {'APP_MODE': asked} for d in docs)} of {len(docs)}", "all",
                asked_in_docs)
    assert not open_to_others, open_to_others
    assert not holding, holding
    assert asked_in_docs
