"""Unit tests for supervisor/settings.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from supervisor.settings import SETTINGS, PluginSettings, SettingsError


def test_defaults_from_an_empty_environment() -> None:
    settings = PluginSettings.from_env({})
    assert settings == PluginSettings()
    assert settings.log_level == logging.INFO
    assert settings.destroy_logs_on_stop is False


def test_empty_values_mean_the_default() -> None:
    assert PluginSettings.from_env({"LOG_LEVEL": "", "DESTROY_LOGS_ON_STOP": ""}) == PluginSettings()


def test_every_setting_maps_to_a_field() -> None:
    fields = set(PluginSettings.__dataclass_fields__)
    assert {s.name.lower() for s in SETTINGS} == fields
    for s in SETTINGS:  # each default parses
        s.parse(s.default)


@pytest.mark.parametrize(
    ("value", "level"),
    [("debug", logging.DEBUG), ("INFO", logging.INFO), ("Warning", logging.WARNING), ("error", logging.ERROR),
     (" debug ", logging.DEBUG)],
)
def test_log_level(value: str, level: int) -> None:
    assert PluginSettings.from_env({"LOG_LEVEL": value}).log_level == level


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("TRUE", True), ("false", False),
                                                 ("0", False), ("f", False)])
def test_destroy_logs_on_stop(value: str, expected: bool) -> None:
    assert PluginSettings.from_env({"DESTROY_LOGS_ON_STOP": value}).destroy_logs_on_stop is expected


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"LOG_LEVEL": "10"}, "LOG_LEVEL"),
        ({"DESTROY_LOGS_ON_STOP": "sometimes"}, "DESTROY_LOGS_ON_STOP"),
        ({"LOG_LEVEL": "debug", "DESTROY_LOGS_ON_STOP": "yes please"}, "DESTROY_LOGS_ON_STOP"),
    ],
)
def test_bad_values_raise_settings_error_naming_the_setting(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name) as info:
        PluginSettings.from_env(env)
    assert repr(env[name]) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unrelated_variables_are_ignored() -> None:
    assert PluginSettings.from_env({"PATH": "/bin", "log_level": "debug"}) == PluginSettings()


def test_every_setting_is_settable_in_config_json() -> None:
    """`docker plugin set` changes only what config.json declares settable (LOG_DRIVER_LEVEL, Elastic's name)."""
    config = json.loads((Path(__file__).resolve().parents[2] / "config.json").read_text())
    env = {e["Name"]: e for e in config["Env"]}
    for s in SETTINGS:
        assert "value" in env[s.name].get("Settable", []), s.name
        assert env[s.name]["Value"] == s.default, s.name


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("2", 2), (" 8 ", 8), ("", 1)])
def test_shippers(value: str, expected: int) -> None:
    assert PluginSettings.from_env({"SHIPPERS": value}).shippers == expected


@pytest.mark.parametrize("value", ["0", "9", "-1", "two", "1.5", "2x"])
def test_shippers_out_of_range_is_refused_naming_it(value: str) -> None:
    with pytest.raises(SettingsError, match=r"SHIPPERS=.*from 1 to 8"):
        PluginSettings.from_env({"SHIPPERS": value})
