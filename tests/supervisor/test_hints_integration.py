"""Hints (co.elastic.logs/ labels) and the tag on the real supervisor, with the fake dockerd and the Elasticsearch
stand-in: what the shipper is given, what reaches Elasticsearch, what `docker logs` still returns, and that a
plugin restarted on the same folders (re-attach) decides the same."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, start_plugin, wait_until
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"


@dataclass
class LabelledLogger(FakeLogger):
    """A logger whose container carries these labels besides make_info's."""

    labels: dict[str, str] = field(default_factory=dict)

    @property
    def info(self) -> dict[str, Any]:
        data = super().info
        data["ContainerLabels"] = {**data["ContainerLabels"], **self.labels}
        return data


def docs_of(es: EsStandin, logger: FakeLogger) -> list[dict[str, Any]]:
    return [d for d in es.docs(INDEX) if d["container"]["id"] == logger.container_id]


def read_back(plugin: RunningPlugin, logger: FakeLogger) -> list[bytes]:
    return [e.line for e in plugin.client.read_logs(logger.info)]


def shipped_options(plugin: RunningPlugin, logger: FakeLogger) -> dict[str, Any]:
    """The options the shipper was given for the container (it keeps them while lines are left to ship)."""
    path = plugin.data_dir / "shipper" / f"{logger.container_id}.json"
    wait_until(path.exists, 10, message="the shipper to keep the container's options")
    options: dict[str, Any] = json.loads(path.read_text())["options"]
    return options


def test_labels_override_log_opts_and_the_tag_reaches_the_documents(plugin: RunningPlugin, es: EsStandin) -> None:
    lg = LabelledLogger(plugin.client, plugin.fifo_dir, labels={
        "co.elastic.logs/include_lines": r"^ERROR,^\d{1\,3} ms",
        "co.elastic.logs/multiline.pattern": "^[[:space:]]",
        "co.elastic.logs/json.message_key": "msg",
    }, config={"hosts": es.url, "include_lines": "^INFO", "tags": "blue",
               "tag": "{{.ImageName}}/{{.Name | upper}}/{{.ID}}"})
    assert not lg.start().get("Err")
    lg.write(entry(b"ERROR one"), entry(b"ERROR two"))
    wait_until(lambda: len(docs_of(es, lg)) == 2, 20, message="the container's two documents")
    tag = f"test/busybox:latest/WEB-1/{lg.container_id[:12]}"
    assert [d["tags"] for d in docs_of(es, lg)] == [["blue", tag]] * 2
    options = shipped_options(plugin, lg)
    assert options["include_lines"] == ["^ERROR", r"^\d{1,3} ms"]  # the label's, not the log-opt's
    assert options["multiline.pattern"] == "^[[:space:]]" and options["json.message_key"] == "msg"
    assert options["tag"] == tag
    lg.stop()


def test_a_label_setting_an_output_is_refused_and_the_container_still_ships_where_its_log_opts_say(
        plugin: RunningPlugin, es: EsStandin) -> None:
    lg = LabelledLogger(plugin.client, plugin.fifo_dir, config={"hosts": es.url}, labels={
        "co.elastic.logs/hosts": "http://attacker.example:9200",
        "co.elastic.logs/password": "s3cret-label-value",
        "co.elastic.logs/ssl.verification_mode": "none",
    })
    assert not lg.start().get("Err")
    lg.write(entry(b"still logged"))
    wait_until(lambda: len(docs_of(es, lg)) == 1, 20, message="the line shipped to the log-opts' output")
    assert read_back(plugin, lg) == [b"still logged\n"]
    text = plugin.log_text()
    refusals = [line for line in text.splitlines() if "co.elastic.logs/hosts" in line]
    assert len(refusals) == 1, refusals
    assert "'co.elastic.logs/password'" in refusals[0] and "'co.elastic.logs/ssl.verification_mode'" in refusals[0]
    assert "s3cret-label-value" not in text and "attacker" not in text
    options = shipped_options(plugin, lg)
    assert options["hosts"] == [es.url] and options["ssl.verification_mode"] == "full"
    lg.stop()


def test_a_bad_hint_value_fails_start_logging_naming_the_label(plugin: RunningPlugin) -> None:
    lg = LabelledLogger(plugin.client, plugin.fifo_dir, labels={"co.elastic.logs/multiline.max_lines": "none"})
    reply = lg.start()
    assert "co.elastic.logs/multiline.max_lines" in reply["Err"] and "whole number" in reply["Err"]


def test_enabled_false_keeps_lines_local_and_ships_nothing_also_after_a_plugin_restart(
        plugin: RunningPlugin, es: EsStandin) -> None:
    local = LabelledLogger(plugin.client, plugin.fifo_dir, config={"hosts": es.url},
                           labels={"co.elastic.logs/enabled": "false"})
    # A shipping container beside it: once its lines are in Elasticsearch, the local one's would have been too.
    shipping = LabelledLogger(plugin.client, plugin.fifo_dir, name="web-2",
                              config={"hosts": es.url, "tag": "{{.Name}} {{.Command}}"})
    assert not local.start().get("Err") and not shipping.start().get("Err")
    local.write(*(entry(b"local %d" % i) for i in range(3)))
    shipping.write(entry(b"shipped 0"))
    wait_until(lambda: len(docs_of(es, shipping)) == 1, 20, message="the shipping container's line")
    wait_until(lambda: len(read_back(plugin, local)) == 3, 10, message="the local container's lines stored")
    assert not (plugin.data_dir / "shipper" / f"{local.container_id}.json").exists()

    # dockerd restarts a killed plugin on the same folders; it never repeats StartLogging (re-attach).
    os.killpg(plugin.proc.pid, signal.SIGKILL)
    plugin.proc.wait(10)
    again = start_plugin(plugin.data_dir.parent)
    plugin.proc = again.proc  # the fixture stops this one
    local.write(entry(b"local 3"))
    shipping.write(entry(b"shipped 1"))
    wait_until(lambda: len(docs_of(es, shipping)) == 2, 20, message="the shipping container's line after restart")
    assert docs_of(es, local) == []
    assert read_back(again, local) == [b"local %d\n" % i for i in range(4)]
    assert {tuple(d["tags"]) for d in docs_of(es, shipping)} == {("web-2 /bin/sh -c echo hi",)}
    local.stop()
    shipping.stop()
