"""supervisor/hints.py: Filebeat's co.elastic.logs/ labels over the log-opts (the unit part; the real supervisor
is in test_hints_integration.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from proto.options import LogOptionError
from supervisor.hints import options_with_hints
from testkit.dockerd_driver import make_info

CID = "f" * 64
SHIPS = {"hosts": "http://es:9200"}


def info(labels: dict[str, Any], **config: str) -> dict[str, Any]:
    data = make_info(CID, "web-1", config)
    data["ContainerLabels"] = labels
    return data


def test_a_hint_overrides_the_log_opt_of_the_same_name() -> None:
    options = options_with_hints(info({"co.elastic.logs/include_lines": "^ERROR,^WARN",
                                       "co.elastic.logs/multiline.pattern": "^[[:space:]]",
                                       "co.elastic.logs/json.message_key": "msg"},
                                      include_lines="^INFO", **SHIPS))
    assert options["include_lines"] == ("^ERROR", "^WARN")
    assert options["multiline.pattern"] == "^[[:space:]]"
    assert options["json.message_key"] == "msg"
    assert options.ships


def test_labels_without_the_prefix_change_nothing() -> None:
    options = options_with_hints(info({"include_lines": "^x", "co.elastic.metrics/enabled": "false"}, **SHIPS))
    assert options["include_lines"] == () and options.ships


@pytest.mark.parametrize(("labels", "ships"), [
    ({"co.elastic.logs/enabled": "false"}, False),
    ({"co.elastic.logs/enabled": "FALSE"}, False),
    ({"co.elastic.logs/enabled": "0"}, False),
    ({"co.elastic.logs/enabled": "true"}, True),
    ({"co.elastic.logs/disable": "true"}, False),  # Filebeat's older name
])
def test_enabled_false_keeps_the_logs_local(labels: dict[str, str], ships: bool) -> None:
    options = options_with_hints(info(labels, **SHIPS))
    assert options.ships is ships
    assert options["hosts"] == ("http://es:9200",)  # the output stays known; only shipping is off


@pytest.mark.parametrize(("label", "value", "why"), [
    ("co.elastic.logs/enabled", "nope", "is not a boolean"),
    ("co.elastic.logs/multiline.max_lines", "0", "must be at least 1"),
    ("co.elastic.logs/multiline.match", "around", "must be one of after, before"),
    ("co.elastic.logs/multiline.pattern", "(?=x)", "RE2"),
    ("co.elastic.logs/exclude_lines", "ok,(b", "item 2"),
    ("co.elastic.logs/json.keys_under_root", "yes", "is not a boolean"),
])
def test_a_bad_hint_value_fails_naming_the_label(label: str, value: str, why: str) -> None:
    with pytest.raises(LogOptionError, match=f"label '{label}'") as refused:
        options_with_hints(info({label: value}))
    assert why in str(refused.value)


def test_a_hint_that_cannot_act_with_the_log_opts_names_the_labels_applied() -> None:
    with pytest.raises(LogOptionError, match=r"'multiline.count_lines'.*labels co.elastic.logs/multiline.type"):
        options_with_hints(info({"co.elastic.logs/multiline.type": "count"}))


def test_a_non_string_label_value_is_refused_naming_it() -> None:
    with pytest.raises(LogOptionError, match=r"label 'co\.elastic\.logs/json\.message_key' must be a string"):
        options_with_hints(info({"co.elastic.logs/json.message_key": 5}))


@pytest.mark.parametrize("name", ["hosts", "password", "api_key", "ssl.verification_mode", "index", "pipeline",
                                  "output.elasticsearch.hosts", "processors.1.add_fields", "module", "raw"])
def test_a_label_that_is_not_a_processing_hint_is_refused_in_one_line_without_its_value(
        name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="elp.supervisor")
    options = options_with_hints(info({f"co.elastic.logs/{name}": "s3cret-VALUE",
                                       "co.elastic.logs/ssl.certificate": "/tmp/evil.pem",
                                       "co.elastic.logs/include_lines": "^x"}, **SHIPS))
    assert options["hosts"] == ("http://es:9200",) and options["ssl.verification_mode"] == "full"
    assert options["password"] is None and options["ssl.certificate"] is None
    assert options["include_lines"] == ("^x",)  # the processing hint beside them still counts
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert f"'co.elastic.logs/{name}'" in lines[0] and "'co.elastic.logs/ssl.certificate'" in lines[0]
    assert CID[:12] in lines[0]
    assert "s3cret-VALUE" not in lines[0] and "evil" not in lines[0]
