"""Through a real dockerd: a container printing a Java stack trace and JSON lines, with Filebeat's multiline recipe
and JSON options as log-opts. The documents are the joined trace and the decoded objects; `docker logs` prints
exactly what the container wrote (processing happens only on the way to Elasticsearch)."""

from __future__ import annotations

from tests.e2e.conftest import DockerEngine, Plugin, new_name, wait_until
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"
JAVA = r"^[[:space:]]+(at|\.{3})[[:space:]]+\b|^Caused by:"
LINES = [
    'Exception in thread "main" java.lang.IllegalStateException: boom',
    "\tat com.example.App.run(App.java:10)",
    "\tat com.example.App.main(App.java:4)",
    "Caused by: java.lang.NullPointerException",
    "\t... 2 more",
    '{"message":"served","level":"info","user":{"id":7}}',
    '{"message":"done","level":"warn"}',
]


def test_a_java_trace_and_json_lines_arrive_as_events_and_docker_logs_is_unchanged(
        docker_engine: DockerEngine, plugin: Plugin, busybox_image: str, names: list[str]) -> None:
    with EsStandin() as es:  # on the host's 127.0.0.1: the plugin uses the host network
        name = new_name(names)
        # printf '%s\n' prints each argument as it is: tabs, quotes and braces included.
        script = "printf '%s\\n' " + " ".join("'" + line + "'" for line in LINES)
        run = docker_engine.docker(
            "run", "--name", name, "--log-driver", plugin.driver, "--log-opt", f"hosts={es.url}",
            "--log-opt", "flush_interval=200ms", "--log-opt", f"multiline.pattern={JAVA}",
            "--log-opt", "multiline.negate=false", "--log-opt", "multiline.match=after",
            "--log-opt", "json.message_key=message", "--log-opt", "json.keys_under_root=true",
            busybox_image, "sh", "-c", script, timeout=120)
        assert run.returncode == 0, run.stderr
        logs = docker_engine.docker("logs", name, timeout=60)
        assert logs.stdout == "".join(line + "\n" for line in LINES)
        # The container stopped: its last event ("done") is sent without waiting for the timeout.
        wait_until(lambda: len(es.docs(INDEX)) >= 3, 60, message="3 documents")
        docs = sorted(es.docs(INDEX), key=lambda d: d["@timestamp"])
        assert len(docs) == 3
        trace, served, done = docs
        assert trace["message"] == "\n".join(LINES[:5]) and trace["log"]["flags"] == ["multiline"]
        assert (served["message"], served["level"], served["user"]) == ("served", "info", {"id": 7})
        assert (done["message"], done["level"]) == ("done", "warn") and "log" not in done
