"""Through a real dockerd: a Java service's stack trace and JSON lines, processed on the way to Elasticsearch
(multiline, JSON, a line filter, a hint from a label, ``tag``), while ``docker logs`` prints exactly what the
container wrote."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import DockerEngine, Plugin, new_name, wait_until
from tests.es_standin import EsStandin

JAVA_PATTERN = r"^[[:space:]]+(at|\.{3})[[:space:]]+\b|^Caused by:"

# What the container writes, line by line: JSON lines of a structured logger around a Java stack trace (with its
# "Caused by" and "... N more"), and a debug line the filter drops.
OUTPUT = [
    '{"level":"info","message":"service started","port":8080}',
    "Exception in thread \"main\" java.lang.IllegalStateException: A book has a null property",
    "\tat com.example.myproject.Author.getBookIds(Author.java:38)",
    "\tat com.example.myproject.Bootstrap.main(Bootstrap.java:14)",
    "Caused by: java.lang.NullPointerException",
    "\tat com.example.myproject.Book.getId(Book.java:22)",
    "\tat com.example.myproject.Author.getBookIds(Author.java:35)",
    "\t... 1 more",
    "DEBUG cache warmed",
    '{"level":"warn","message":"slow request","took_ms":1250,"http":{"method":"GET"}}',
]


def test_java_trace_and_json_lines(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                   names: list[str], tmp_path: Path) -> None:
    script = tmp_path / "out.txt"
    script.write_text("".join(line + "\n" for line in OUTPUT))
    name = new_name(names)
    with EsStandin() as es:
        run = docker_engine.docker(
            "run", "--name", name, "--log-driver", plugin.driver,
            "--log-opt", f"hosts={es.url}", "--log-opt", "flush_interval=200ms",
            "--log-opt", f"multiline.pattern={JAVA_PATTERN}", "--log-opt", "multiline.negate=false",
            "--log-opt", "multiline.match=after",
            "--log-opt", "json.keys_under_root=true", "--log-opt", "json.message_key=message",
            "--log-opt", "tag={{.Name}}/{{.ImageName}}",
            # A hint: a label overrides the log-opt (no filter given as a log-opt at all here).
            "--label", "co.elastic.logs/exclude_lines=^DEBUG",
            "-v", f"{tmp_path}:/in:ro", busybox_image, "cat", "/in/out.txt", timeout=120)
        assert run.returncode == 0, run.stderr
        # 4 events: the JSON line, the whole trace, (the DEBUG line is dropped), the second JSON line.
        wait_until(lambda: len(es.docs("logs-docker-default")) >= 3, 60, message="3 documents")
        docs = sorted(es.docs("logs-docker-default"), key=lambda d: d["@timestamp"])
        assert len(docs) == 3, [d.get("message") for d in docs]
        started, trace, slow = docs

        assert started["message"] == "service started"
        assert started["level"] == "info" and started["port"] == 8080
        assert trace["message"] == "\n".join(OUTPUT[1:8])
        assert trace["log"]["flags"] == ["multiline"]
        assert slow["message"] == "slow request"
        assert slow["took_ms"] == 1250 and slow["http"] == {"method": "GET"}
        for doc in docs:
            assert doc["container"]["name"] == name
            assert f"{name}/{busybox_image}" in doc["tags"]
            assert doc["stream"] == "stdout"

    # docker logs reads the local copy: byte for byte what the container wrote, the dropped line included.
    logs = docker_engine.docker("logs", name, timeout=30)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "".join(line + "\n" for line in OUTPUT)
