"""Through a real dockerd: the container's co.elastic.logs/ labels reach the plugin (Info.ContainerLabels) and act as
hints, and the tag log-opt is rendered into the documents' tags."""

from __future__ import annotations

import json

from tests.e2e.conftest import DockerEngine, Plugin, new_name, wait_until
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"


def test_labels_act_as_hints_and_the_tag_is_rendered(docker_engine: DockerEngine, plugin: Plugin,
                                                    busybox_image: str, names: list[str]) -> None:
    with EsStandin() as es:  # on the host's 127.0.0.1: the plugin uses the host network
        local, shipped = new_name(names), new_name(names)
        common = ["--log-driver", plugin.driver, "--log-opt", f"hosts={es.url}", "--log-opt", "flush_interval=200ms"]
        run = docker_engine.docker("run", "--name", local, *common, "--label", "co.elastic.logs/enabled=false",
                                   busybox_image, "echo", "local only", timeout=60)
        assert run.returncode == 0, run.stderr
        run = docker_engine.docker("run", "--name", shipped, *common, "--log-opt", "tags=e2e",
                                   "--log-opt", "tag={{.ImageName}}/{{.Name}}/{{.ID}}",
                                   "--label", "co.elastic.logs/hosts=http://127.0.0.1:1",  # refused: not a hint
                                   busybox_image, "echo", "shipped", timeout=60)
        assert run.returncode == 0, run.stderr
        wait_until(lambda: len(es.docs(INDEX)) >= 1, 60, message="the shipping container's document")
        (doc,) = es.docs(INDEX)  # the container with enabled=false shipped nothing (it ran and stopped first)
        short_id = docker_engine.docker("inspect", "-f", "{{.Id}}", shipped, check=True).stdout.strip()[:12]
        assert doc["message"] == "shipped"
        assert doc["tags"] == ["e2e", f"{busybox_image}/{shipped}/{short_id}"]
        assert docker_engine.docker("logs", local, timeout=30).stdout == "local only\n"
        local_id = docker_engine.docker("inspect", "-f", "{{.Id}}", local, check=True).stdout.strip()
        # The local store was told so at StartLogging: nothing to wait for. Its state.json is written when the
        # shipping state changes or the folder is loaded again, so it may not exist yet: not shipping is the default.
        state_file = plugin.store_dir / "containers" / local_id / "state.json"
        assert not state_file.exists() or json.loads(state_file.read_text())["ships"] is False

        bad = docker_engine.docker("run", "--rm", "--log-driver", plugin.driver,
                                   "--label", "co.elastic.logs/multiline.max_lines=0", busybox_image, "true",
                                   timeout=60)
        assert bad.returncode != 0 and "co.elastic.logs/multiline.max_lines" in bad.stderr, bad.stderr
