"""Through a real dockerd: a container configured as for Elastic's plugin 7.x (libbeat's option names) ships, and
its documents carry the fields Elastic's plugin writes (every label, agent.type elastic-log-driver)."""

from __future__ import annotations

from tests.e2e.conftest import DockerEngine, Plugin, new_name, wait_until
from tests.es_standin import EsStandin


def test_elastic_7_log_opts_and_fields(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                       names: list[str]) -> None:
    with EsStandin() as es:
        name = new_name(names)
        run = docker_engine.docker(
            "run", "--name", name, "--log-driver", plugin.driver,
            "--log-opt", f"output.elasticsearch.hosts={es.url}",
            "--log-opt", "output.elasticsearch.index=elastic-log-driver-%{+yyyy.MM.dd}",
            "--log-opt", "output.elasticsearch.backoff.init=200ms", "--log-opt", "flush_interval=200ms",
            "--label", "com.example.team=web", "--label", "tier=front",
            busybox_image, "echo", "  indented", timeout=120)
        assert run.returncode == 0, run.stderr
        wait_until(lambda: es.docs("elastic-log-driver-*"), 60, message="the document")
        (doc,) = es.docs("elastic-log-driver-*")
        assert doc["message"] == "  indented"
        assert doc["container"]["labels"] == {"com_example_team": "web", "tier": "front"}
        assert doc["agent"]["type"] == "elastic-log-driver" and doc["agent"]["ephemeral_id"]
        assert es.index_template("elastic-log-driver") is not None  # the custom index got its template
        refused = docker_engine.docker("run", "--rm", "--log-driver", plugin.driver, "--log-opt", f"hosts={es.url}",
                                       "--log-opt", f"output.elasticsearch.hosts={es.url}", busybox_image, "true",
                                       timeout=60)
        assert refused.returncode != 0
        assert "'hosts' and 'output.elasticsearch.hosts'" in refused.stderr
