"""The plugin's own settings: environment variables that ``docker plugin set`` changes, parsed once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proto.shards import MAX_SHIPPERS
from supervisor.logopts import parse_bool, parse_duration


class SettingsError(ValueError):
    """A plugin setting with a bad value; the plugin refuses to start and says which one."""


def parse_log_level(value: str) -> int:
    level = logging.getLevelName(value.strip().upper())
    if not isinstance(level, int):
        raise ValueError("must be one of debug, info, warning, error, critical")
    return level


def parse_optional_log_level(value: str) -> int | None:
    """Empty: not given (LOG_DRIVER_LEVEL's default, so LOG_LEVEL decides)."""
    return parse_log_level(value) if value.strip() else None


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str], Any]
    default: str
    doc: str


def parse_listen_address(value: str) -> tuple[str, int] | None:
    """``host:port`` to serve /metrics on; empty = off."""
    if not value.strip():
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9095")
    return host.strip("[]"), int(port)


def parse_shippers(value: str) -> int:
    """How many shipper processes share the containers (each takes those whose id hashes to it)."""
    text = value.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_SHIPPERS:
        raise ValueError(f"must be a whole number from 1 to {MAX_SHIPPERS}")
    return int(text)


SETTINGS: tuple[Setting, ...] = (
    Setting("LOG_LEVEL", parse_log_level, "info", "the plugin's own log level: debug, info, warning, error"),
    Setting("LOG_DRIVER_LEVEL", parse_optional_log_level, "",
            "Elastic's name of LOG_LEVEL (debug, info, warning, error, critical); set, it wins over LOG_LEVEL's "
            "default, and over another LOG_LEVEL it is refused"),
    Setting(
        "DESTROY_LOGS_ON_STOP",
        parse_bool,
        "false",
        "delete a container's local log files when it stops (after its lines were shipped)",
    ),
    Setting(
        "RETAIN_STOPPED_FOR",
        parse_duration,
        "0",
        "delete the local files of containers stopped for longer than this (e.g. 7d, 12h); 0 keeps them",
    ),
    Setting(
        "METRICS_ADDR",
        parse_listen_address,
        "",
        "serve Prometheus metrics on this host:port (e.g. 127.0.0.1:9095); empty: only on the plugin socket",
    ),
    Setting(
        "SHIPPERS",
        parse_shippers,
        "1",
        f"shipper processes (1 to {MAX_SHIPPERS}); each ships a fixed share of the containers, so a host with many "
        "busy containers can ship on more than one core (one container is always shipped by one process)",
    ),
)


@dataclass(frozen=True)
class PluginSettings:
    log_level: int = logging.INFO
    log_driver_level: int | None = None  # already folded into log_level by from_env
    destroy_logs_on_stop: bool = False
    retain_stopped_for: float = 0.0
    metrics_addr: tuple[str, int] | None = None
    shippers: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PluginSettings:
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.name, "") or setting.default  # docker plugin set X= means the default
            try:
                values[setting.name.lower()] = setting.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"plugin setting {setting.name}={raw!r} {exc}") from None
        _fold_log_driver_level(values, environ)
        return cls(**values)


def _fold_log_driver_level(values: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Elastic's plugin calls LOG_LEVEL LOG_DRIVER_LEVEL (its config.json). LOG_LEVEL is always in the
    environment (config.json's default, info), so only a LOG_LEVEL other than its default conflicts."""
    elastic = values["log_driver_level"]
    if elastic is None:
        return
    if values["log_level"] != elastic and (environ.get("LOG_LEVEL") or "").strip().lower() not in {"", "info"}:
        raise SettingsError(f"plugin settings LOG_LEVEL={environ['LOG_LEVEL']!r} and "
                            f"LOG_DRIVER_LEVEL={environ['LOG_DRIVER_LEVEL']!r} are the same setting with two "
                            "values; set only one")
    values["log_level"] = elastic
