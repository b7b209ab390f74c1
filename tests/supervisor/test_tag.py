"""supervisor/tag.py: Docker's log tag template, rendered as moby's loggerutils.ParseLogTag renders it."""

from __future__ import annotations

from typing import Any

import pytest

from proto.options import LogOptionError
from supervisor.container_options import container_options, tag_inputs
from supervisor.logopts import parse_log_options
from supervisor.tag import render_tag
from testkit.dockerd_driver import make_info

CID = "0123456789ab" + "c" * 52


def info(**config: str) -> dict[str, Any]:
    data = make_info(CID, "web-1", config)
    data["ContainerLabels"] = {"app": "shop", "com.example.team": "web"}
    data["ContainerEnv"] = ["PATH=/bin", "SECRET=hunter2", "REGION=eu"]
    return data


@pytest.mark.parametrize(("template", "expected"), [
    # docs.docker.com "Customize log driver output": every markup of its table, and its example.
    ("{{.ID}}", "0123456789ab"),
    ("{{.FullID}}", CID),
    ("{{.Name}}", "web-1"),  # without dockerd's leading "/"
    ("{{.ImageID}}", "sha256:ababa"),  # the first 12 characters, "sha256:" included, as Docker does
    ("{{.ImageFullID}}", "sha256:" + "ab" * 32),
    ("{{.ImageName}}", "test/busybox:latest"),
    ("{{.DaemonName}}", "docker"),
    ("{{.ImageName}}/{{.Name}}/{{.ID}}", "test/busybox:latest/web-1/0123456789ab"),
    ("mailer", "mailer"),
    # loginfo.go's other methods and fields
    ("{{.Command}}", "/bin/sh -c echo hi"),
    ("{{.Hostname}}", "node-7"),
    ("{{.ContainerName}}", "/web-1"),
    ("{{.ContainerLabels.app}}", "shop"),
    ("{{.ContainerLabels.missing}}", "<no value>"),  # what Go prints for a missing map key
    ('{{index .ContainerLabels "com.example.team"}}', "web"),
    ("{{.ContainerArgs}}", "[-c echo hi]"),
    # templates.go's functions, called and piped (the piped value is the last argument)
    ("{{.Name | upper}}", "WEB-1"),
    ("{{upper .Name}}-{{lower .ImageName}}", "WEB-1-test/busybox:latest"),
    ("{{title .Name}}", "Web-1"),
    ("{{truncate .Name 3}}", "web"),
    ("{{truncate .Name 30}}", "web-1"),
    ("[{{pad .Name 1 2}}]", "[ web-1  ]"),
    ("{{json .ContainerLabels}}", '{"app":"shop","com.example.team":"web"}'),
    ('{{join (split .Name "-") "_"}}', "web_1"),
    ("{{.Name | lower | upper}}", "WEB-1"),
    # Go's trim markers and comments
    ("a {{- .Name -}} b", "aweb-1b"),
    ("{{/* a comment */}}x", "x"),
])
def test_templates_render_as_docker_renders_them(template: str, expected: str) -> None:
    assert render_tag(template, info(), hostname="node-7") == expected


def test_extra_attributes_gives_the_selected_labels_and_environment() -> None:
    # Docker's documented advanced example: --log-opt tag="{{ (.ExtraAttributes nil).SOME_ENV_VAR }}" --log-opt env=...
    data = info(env="REGION", labels="app")
    assert render_tag("{{ (.ExtraAttributes nil).REGION }}/{{ (.ExtraAttributes nil).app }}", data) == "eu/shop"
    assert render_tag("{{ (.ExtraAttributes nil).SECRET }}", data) == "<no value>"  # not selected by env


def test_config_is_shown_with_its_secrets_masked() -> None:
    rendered = render_tag("{{.Config}}", info(user="elastic", password="hunter2"))
    assert "hunter2" not in rendered and "password:***" in rendered


@pytest.mark.parametrize(("template", "why"), [
    ("{{.Name", "unclosed"),
    ("{{if .Name}}x{{end}}", "{{if}}"),
    ("{{range .ContainerArgs}}{{.}}{{end}}", "{{range}}"),
    ("{{$n := .Name}}", "variables"),
    ('{{printf "%s" .Name}}', "'printf'"),
    ("{{.ContainerEnv}}", "environment is never kept"),
    ("{{.ContainerCreated}}", "not supported"),
    ("{{.}}", "whole Info"),
    ("{{}}", "empty action"),
    ("{{(.Name}}", "unclosed parenthesis"),
])
def test_what_the_plugin_cannot_render_is_refused_naming_tag(template: str, why: str) -> None:
    with pytest.raises(LogOptionError, match="'tag'") as refused:
        parse_log_options({"tag": template})
    assert why in str(refused.value)


@pytest.mark.parametrize(("template", "why"), [
    ("{{.Nope}}", ".Nope"),
    ("{{.Name | truncate 3}}", "truncate needs a string"),  # Go: truncate 3 .Name, the wrong way round
    ("{{truncate .Name -1}}", "non-negative"),
    ("{{upper}}", "1"),
    ("{{.Name.first}}", "not a map"),
    ("{{(.ExtraAttributes 1).x}}", "nil"),
    ('{{pad .Name 5000 0}}', "at most"),
])
def test_a_template_that_fails_on_the_container_fails_start_logging_naming_tag(template: str, why: str) -> None:
    with pytest.raises(LogOptionError, match="log-opt 'tag'") as refused:
        container_options(info(tag=template))
    assert why in str(refused.value)


def test_the_rendered_tag_is_the_option_value_the_shipper_gets() -> None:
    assert container_options(info(tag="{{.Name}}"))["tag"] == "web-1"
    assert container_options(info())["tag"] is None


def test_the_command_line_is_kept_for_re_attach_only_when_the_tag_shows_it() -> None:
    assert tag_inputs(info(tag="{{.Name}}")) == {}
    kept = {"ContainerEntrypoint": "/bin/sh", "ContainerArgs": ["-c", "echo hi"]}
    assert tag_inputs(info(tag="{{.Command}}")) == kept
