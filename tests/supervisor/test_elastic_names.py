"""Elastic's log-opt names (supervisor/elastic_names.py) through the real option parser, and LOG_DRIVER_LEVEL."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from proto.options import LogOptionError
from supervisor.elastic_names import ACCEPTED_NO_EFFECT, ALIASES, NOT_SUPPORTED
from supervisor.logopts import OPTIONS_BY_NAME, parse_log_options
from supervisor.settings import PluginSettings, SettingsError

# A value for each alias, and what our option holds after parsing it.
ALIAS_VALUES: dict[str, tuple[str, object]] = {
    "output.elasticsearch.hosts": ("https://es1:9200,es2:9200", ("https://es1:9200", "es2:9200")),
    "output.elasticsearch.username": ("elastic", "elastic"),
    "output.elasticsearch.password": ("s3cret", "s3cret"),
    "output.elasticsearch.api_key": ("id:key", "id:key"),
    "output.elasticsearch.index": ("dockerlogs-%{+yyyy.MM.dd}", "dockerlogs-%{+yyyy.MM.dd}"),
    "output.elasticsearch.pipeline": ("docker", "docker"),
    "output.elasticsearch.timeout": ("30", 30.0),
    "output.elasticsearch.backoff.init": ("2s", 2.0),
    "output.elasticsearch.backoff.max": ("2m", 120.0),
    "output.elasticsearch.max_retries": ("3", 3),
    "output.elasticsearch.bulk_max_size": ("50", 50),
    "output.elasticsearch.compression_level": ("5", 5),
    "output.elasticsearch.proxy_url": ("http://proxy:3128", "http://proxy:3128"),
    "output.elasticsearch.ssl.certificate_authorities": ("/etc/ca.pem", "/etc/ca.pem"),
    "output.elasticsearch.ssl.verification_mode": ("certificate", "certificate"),
    "output.elasticsearch.ssl.certificate": ("/etc/c.pem", "/etc/c.pem"),
    "output.elasticsearch.ssl.key": ("/etc/k.pem", "/etc/k.pem"),
    "cloud.id": ("deploy:abc", "deploy:abc"),
    "cloud.auth": ("elastic:pw", "elastic:pw"),
    "template_name": ("docker", "docker"),
    "template_pattern": ("docker-*", "docker-*"),
}
NEEDS = {"output.elasticsearch.username": {"password": "pw"}, "output.elasticsearch.password": {"user": "u"},
         "output.elasticsearch.ssl.certificate": {"ssl.key": "/k"},
         "output.elasticsearch.ssl.key": {"ssl.certificate": "/c"}}


def test_every_alias_names_one_of_our_options_and_has_a_case() -> None:
    assert set(ALIAS_VALUES) == set(ALIASES)
    assert all(ours in OPTIONS_BY_NAME for ours in ALIASES.values())


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_an_alias_means_our_option(alias: str) -> None:
    value, parsed = ALIAS_VALUES[alias]
    ours = ALIASES[alias]
    assert parse_log_options({alias: value, **NEEDS.get(alias, {})})[ours] == parsed
    assert parse_log_options({alias: value, **NEEDS.get(alias, {})}) == parse_log_options(
        {ours: value, **NEEDS.get(alias, {})})


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_an_alias_and_our_name_together_are_refused_naming_both(alias: str) -> None:
    value, _ = ALIAS_VALUES[alias]
    with pytest.raises(LogOptionError) as info:
        parse_log_options({alias: value, ALIASES[alias]: value, **NEEDS.get(alias, {})})
    assert repr(alias) in str(info.value) and repr(ALIASES[alias]) in str(info.value)


def test_two_spellings_of_hosts_are_refused() -> None:
    with pytest.raises(LogOptionError, match=re.escape("'endpoint' and 'output.elasticsearch.hosts'")):
        parse_log_options({"endpoint": "es:9200", "output.elasticsearch.hosts": "es:9200"})


def test_elastic_7_daemon_json_ships() -> None:
    """The daemon.json of Elastic's 7.x docs (log-driver-configuration.html, 7.6-7.8)."""
    opts = parse_log_options({
        "output.elasticsearch.hosts": "https://myhost:9200",
        "output.elasticsearch.username": "myusername",
        "output.elasticsearch.password": "mypassword",
        "output.elasticsearch.index": "elastic-log-driver-%{+yyyy.MM.dd}",
    })
    assert opts.ships
    assert (opts["hosts"], opts["user"], opts["password"]) == (("https://myhost:9200",), "myusername", "mypassword")
    assert opts["index"] == "elastic-log-driver-%{+yyyy.MM.dd}"


def test_a_yaml_list_of_hosts_as_libbeat_read_it() -> None:
    opts = parse_log_options({"output.elasticsearch.hosts": '["https://a:9200", \'b:9200\']'})
    assert opts["hosts"] == ("https://a:9200", "b:9200")


def test_protocol_and_path_apply_to_hosts_without_them() -> None:
    opts = parse_log_options({"output.elasticsearch.hosts": "a:9200,http://b:9200,c:9200/es",
                              "output.elasticsearch.protocol": "https", "output.elasticsearch.path": "/proxy"})
    assert opts["hosts"] == ("https://a:9200/proxy", "http://b:9200/proxy", "https://c:9200/es")


@pytest.mark.parametrize("name", ["proxy_url", "output.elasticsearch.proxy_url"])
def test_a_proxy_given_as_host_port_is_http_as_in_libbeat(name: str) -> None:
    assert parse_log_options({"hosts": "es:9200", name: "proxy:3128"})["proxy_url"] == "http://proxy:3128"
    assert parse_log_options({"hosts": "es:9200", name: "socks5://p:1080"})["proxy_url"] == "socks5://p:1080"


def test_a_bad_protocol_is_refused_by_name() -> None:
    with pytest.raises(LogOptionError, match=re.escape("'output.elasticsearch.protocol'")):
        parse_log_options({"hosts": "a:9200", "output.elasticsearch.protocol": "ftp"})


def test_an_error_names_the_alias_given_not_our_name() -> None:
    with pytest.raises(LogOptionError) as info:
        parse_log_options({"hosts": "es:9200", "output.elasticsearch.backoff.init": "soon"})
    assert "'output.elasticsearch.backoff.init'" in str(info.value)
    assert "'backoff_init'" not in str(info.value)


def test_a_secret_alias_is_never_echoed() -> None:
    with pytest.raises(LogOptionError) as info:
        parse_log_options({"output.elasticsearch.username": "u", "output.elasticsearch.password": "hunter2",
                           "output.elasticsearch.api_key": "k"})
    assert "hunter2" not in str(info.value)
    assert "'output.elasticsearch.username'" in str(info.value)


@pytest.mark.parametrize("name", sorted(NOT_SUPPORTED))
def test_unsupported_elastic_options_are_refused_saying_why(name: str) -> None:
    with pytest.raises(LogOptionError, match=f"'{name}'.*not supported"):
        parse_log_options({"hosts": "es:9200", name: "x"})


@pytest.mark.parametrize(("name", "good", "bad"), [("output.elasticsearch.worker", "4", "many"),
                                                   ("output.elasticsearch.loadbalance", "false", "perhaps"),
                                                   ("output.elasticsearch.escape_html", "false", "true"),
                                                   ("output.elasticsearch.ssl.enabled", "true", "false")])
def test_options_with_nothing_to_tune_are_checked_then_dropped(name: str, good: str, bad: str) -> None:
    assert name in ACCEPTED_NO_EFFECT
    assert parse_log_options({"hosts": "es:9200", name: good}) == parse_log_options({"hosts": "es:9200"})
    with pytest.raises(LogOptionError, match=f"'{name}'"):
        parse_log_options({"hosts": "es:9200", name: bad})


def test_the_migration_doc_names_every_elastic_option() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "migrating-from-elastic.md").read_text()
    names = [*ALIASES, *ACCEPTED_NO_EFFECT, *NOT_SUPPORTED, "output.elasticsearch.protocol",
             "output.elasticsearch.path", "LOG_DRIVER_LEVEL"]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"docs/migrating-from-elastic.md does not name {missing}"


# ---------------------------------------------------------------------------------------------------- settings


def test_log_driver_level_works_as_log_level() -> None:
    # config.json gives LOG_LEVEL its default (info) always: LOG_DRIVER_LEVEL wins over it.
    assert PluginSettings.from_env({"LOG_LEVEL": "info", "LOG_DRIVER_LEVEL": "debug"}).log_level == logging.DEBUG
    assert PluginSettings.from_env({"LOG_DRIVER_LEVEL": "critical"}).log_level == logging.CRITICAL
    assert PluginSettings.from_env({"LOG_LEVEL": "error", "LOG_DRIVER_LEVEL": ""}).log_level == logging.ERROR
    assert PluginSettings.from_env({"LOG_LEVEL": "error", "LOG_DRIVER_LEVEL": "error"}).log_level == logging.ERROR


def test_two_different_levels_are_refused_naming_both() -> None:
    with pytest.raises(SettingsError, match="LOG_LEVEL='error' and LOG_DRIVER_LEVEL='debug'"):
        PluginSettings.from_env({"LOG_LEVEL": "error", "LOG_DRIVER_LEVEL": "debug"})


def test_a_bad_log_driver_level_is_named() -> None:
    with pytest.raises(SettingsError, match="LOG_DRIVER_LEVEL='loud'"):
        PluginSettings.from_env({"LOG_DRIVER_LEVEL": "loud"})
