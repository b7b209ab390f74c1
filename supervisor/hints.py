"""Hints from container labels: Filebeat's ``co.elastic.logs/...`` labels set a container's processing options.

A compose file or a swarm stack can then configure multiline, JSON and line filters per service with no daemon.json
change. The hint names are Filebeat's (hints-based autodiscover): ``co.elastic.logs/enabled``, ``multiline.*``,
``json.*``, ``include_lines``, ``exclude_lines``; a hint replaces the log-opt of the same name for its container.

Labels are readable by anyone who may ``docker inspect``, and are set by whoever builds the image: a label can never
choose an output, a credential or TLS. Any other ``co.elastic.logs/`` label is refused with one log line naming it
(never its value) and the container logs as if it were not there. A bad value of a processing hint fails
StartLogging naming the label, like a bad log-opt.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from proto.options import LogOptionError, shown_value
from supervisor.logopts import PROCESSING_OPTIONS, LogOptions, parse_bool, parse_log_options

log = logging.getLogger("elp.supervisor")

PREFIX = "co.elastic.logs/"
HINTS = {opt.name: opt for opt in PROCESSING_OPTIONS}


def options_with_hints(info: Mapping[str, Any]) -> LogOptions:
    """The container's log-opts with its hints applied; raises LogOptionError naming a bad option or label."""
    hinted, enabled, refused = _read_hints(info.get("ContainerLabels"))
    if refused:
        log.warning("container %s: label%s %s ignored: a co.elastic.logs/ label may only set enabled, "
                    "multiline.*, json.*, include_lines or exclude_lines (outputs, credentials and TLS come from "
                    "log-opts only)", str(info.get("ContainerID") or "?")[:12], "s" if len(refused) > 1 else "",
                    ", ".join(repr(label[:200]) for label in refused))
    config = info.get("Config")
    if hinted:
        config = {**(config if isinstance(config, Mapping) else {}), **hinted}
    try:
        options = parse_log_options(config)
    except LogOptionError as exc:
        if not hinted:
            raise
        labels = ", ".join(PREFIX + name for name in sorted(hinted))
        raise LogOptionError(f"{exc} (with the container's labels {labels} applied)") from None
    return options if enabled else replace(options, shipping=False)


def _read_hints(labels: Any) -> tuple[dict[str, str], bool, list[str]]:
    """The processing hints (log-opt name -> value, each value checked), whether shipping is enabled, and the
    refused labels."""
    hinted: dict[str, str] = {}
    enabled = True
    refused: list[str] = []
    if not isinstance(labels, Mapping):
        return hinted, enabled, refused
    for label, value in sorted(labels.items()):
        if not isinstance(label, str) or not label.startswith(PREFIX):
            continue
        name = label[len(PREFIX):]
        if name in {"enabled", "disable"}:  # "disable" is Filebeat's older name (deprecated in 8.0)
            on = _parse(label, value, parse_bool)
            enabled = enabled and (on if name == "enabled" else not on)
        elif name in HINTS:
            _parse(label, value, HINTS[name].parse)
            hinted[name] = value
        else:
            refused.append(label)
    return hinted, enabled, refused


def _parse(label: str, value: Any, parse: Any) -> Any:
    if not isinstance(value, str):
        raise LogOptionError(f"label {label!r} must be a string")
    try:
        return parse(value)
    except ValueError as exc:
        raise LogOptionError(f"label {label!r}: {shown_value(value)!r} {exc}") from None
