"""Unit tests for supervisor/logopts.py."""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.options import SECRET_OPTIONS, LogOptionError, user_regex
from supervisor.logopts import OPTIONS, OPTIONS_BY_NAME, parse_duration, parse_log_options, parse_size, parse_text
from testkit.dockerd_driver import PluginClient, make_info, new_container_id
from testkit.plugin import RunningPlugin

# For every option: (a good value, what it parses to, options it needs beside it, a bad value or None).
CASES: dict[str, tuple[str, Any, dict[str, str], str | None]] = {
    "mode": ("non-blocking", "non-blocking", {}, "fast"),
    "max-buffer-size": ("4m", 4_000_000, {"mode": "non-blocking"}, "4 megs"),
    "cache-disabled": ("true", True, {}, "yes please"),
    "cache-max-size": ("20m", 20_000_000, {}, "-1"),
    "cache-max-file": ("5", 5, {}, "five"),
    "cache-compress": ("false", False, {}, "maybe"),
    "labels": ("a, b,,c", ("a", "b", "c"), {}, None),
    "labels-regex": ("^com\\.example\\.", "^com\\.example\\.", {}, "(unclosed"),
    "env": ("A,B", ("A", "B"), {}, None),
    "env-regex": ("^APP_", "^APP_", {}, "[z-a]"),
    "tag": ("{{.Name}}", "{{.Name}}", {}, "{{if .Name}}x{{end}}"),
    "max-size": ("10m", 10_000_000, {}, "10x"),
    "max-file": ("3", 3, {}, "0"),
    "compress": ("1", True, {}, "2"),
    "hosts": ("http://es1:9200,es2:9200", ("http://es1:9200", "es2:9200"), {}, None),
    "endpoint": ("es:9200", ("es:9200",), {}, None),
    "cloud_id": ("deploy:abc", "deploy:abc", {}, None),
    "user": ("elastic", "elastic", {"password": "pw"}, None),
    "password": ("pw", "pw", {"user": "elastic"}, None),
    "api_key": ("id:key", "id:key", {}, None),
    "cloud_auth": ("elastic:pw", "elastic:pw", {}, None),
    "index": ("logs-%{+yyyy.MM.dd}", "logs-%{+yyyy.MM.dd}", {}, None),
    "pipeline": ("p1", "p1", {}, None),
    "timeout": ("30s", 30.0, {}, "soon"),
    "backoff_init": ("500ms", 0.5, {}, "-1s"),
    "backoff_max": ("2m", 120.0, {}, "1 minute"),
    "max_retries": ("-1", -1, {}, "-2"),
    "bulk_max_size": ("50", 50, {}, "0"),
    "bulk_max_bytes": ("5m", 5_000_000, {}, "big"),
    "flush_interval": ("1.5", 1.5, {}, "1m30"),
    "compression_level": ("9", 9, {}, "10"),
    "proxy_url": ("http://proxy:3128", "http://proxy:3128", {}, "proxy:3128"),
    "name": ("agent-1", "agent-1", {}, None),
    "tags": ("x,y", ("x", "y"), {}, None),
    "fields": ("env=prod, team = web", (("env", "prod"), ("team", "web")), {}, "env"),
    "dead_letter_index": ("dlq", "dlq", {}, None),
    "ssl.certificate_authorities": ("/etc/ca.pem", "/etc/ca.pem", {}, None),
    "ssl.verification_mode": ("certificate", "certificate", {}, "strict"),
    "ssl.certificate": ("/c.pem", "/c.pem", {"ssl.key": "/k.pem"}, None),
    "ssl.key": ("/k.pem", "/k.pem", {"ssl.certificate": "/c.pem"}, None),
    "multiline.type": ("while_pattern", "while_pattern", {"multiline.pattern": "^ "}, "lines"),
    "multiline.pattern": ("^[[:space:]]", "^[[:space:]]", {}, "(?=x)"),
    "multiline.negate": ("true", True, {"multiline.pattern": "^ "}, "not"),
    "multiline.match": ("before", "before", {"multiline.pattern": "^ "}, "around"),
    "multiline.flush_pattern": ("^END", "^END", {"multiline.pattern": "^ "}, "[z-a]"),
    "multiline.count_lines": ("3", 3, {"multiline.type": "count"}, "0"),
    "multiline.max_lines": ("20", 20, {"multiline.pattern": "^ "}, "0"),
    "multiline.timeout": ("500ms", 0.5, {"multiline.pattern": "^ "}, "0s"),
    "json.keys_under_root": ("true", True, {}, "yes"),
    "json.overwrite_keys": ("false", False, {}, "no"),
    "json.add_error_key": ("1", True, {}, "on"),
    "json.message_key": ("msg", "msg", {}, None),
    "json.expand_keys": ("t", True, {}, "y"),
    "json.ignore_decoding_error": ("f", False, {}, "off"),
    "include_lines": ("^ERR, ^WARN", ("^ERR", "^WARN"), {}, "(a"),
    "exclude_lines": ("\\d{1\\,3}", ("\\d{1,3}",), {}, "a,(b"),
}


def test_cases_cover_every_option() -> None:
    assert set(CASES) == set(OPTIONS_BY_NAME)
    assert len(OPTIONS_BY_NAME) == len(OPTIONS)


def test_a_bad_value_is_given_for_every_option_with_a_real_parser() -> None:
    for opt in OPTIONS:
        bad = CASES[opt.name][3]
        if opt.parse is parse_text:
            assert bad is None, opt.name
        elif opt.name not in {"labels", "env", "hosts", "endpoint", "tags"}:  # comma lists take anything
            assert bad is not None, opt.name


@pytest.mark.parametrize("name", list(CASES))
def test_option_accepts_a_good_value(name: str) -> None:
    good, parsed, companions, _ = CASES[name]
    opts = parse_log_options({name: good, **companions})
    if name == "endpoint":
        assert opts["hosts"] == parsed
    assert opts[name] == parsed


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[3] is not None])
def test_option_rejects_a_bad_value_naming_it(name: str) -> None:
    _, _, companions, bad = CASES[name]
    assert bad is not None
    with pytest.raises(LogOptionError, match=f"'{name}'") as info:
        parse_log_options({name: bad, **companions})
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", list(CASES))
def test_option_must_be_a_string(name: str) -> None:
    with pytest.raises(LogOptionError, match=f"'{name}'"):
        parse_log_options({name: 5})


def test_unknown_option_is_named() -> None:
    with pytest.raises(LogOptionError, match="'max_size'"):
        parse_log_options({"max_size": "10m"})
    with pytest.raises(LogOptionError, match="'aaa'"):  # the first in sorted order
        parse_log_options({"zzz": "1", "aaa": "2", "mode": "blocking"})


@pytest.mark.parametrize("config", [None, {}])
def test_defaults_present(config: dict[str, str] | None) -> None:
    opts = parse_log_options(config)
    assert set(opts.values) == set(OPTIONS_BY_NAME)
    for opt in OPTIONS:
        assert opts[opt.name] == opt.default, opt.name
    assert opts["mode"] == "blocking"
    assert opts["max-size"] == 10_000_000
    assert opts["max-file"] == 5
    assert opts["compress"] is False
    assert opts["hosts"] == ()
    assert opts["max_retries"] == -1
    assert opts["ssl.verification_mode"] == "full"
    assert not opts.ships


def test_ships_only_with_a_destination() -> None:
    assert parse_log_options({"hosts": "es:9200"}).ships
    assert parse_log_options({"endpoint": "es:9200"}).ships
    assert parse_log_options({"cloud_id": "x:y"}).ships
    assert not parse_log_options({"index": "x"}).ships


def test_dockers_own_keys_are_accepted() -> None:
    opts = parse_log_options(
        {"mode": "non-blocking", "max-buffer-size": "1m", "cache-disabled": "false", "cache-max-size": "20m",
         "cache-max-file": "5", "cache-compress": "true"}
    )
    assert opts["max-buffer-size"] == 1_000_000


def test_secret_options_are_the_expected_ones() -> None:
    assert {"password", "api_key", "cloud_auth", "ssl.key"} <= SECRET_OPTIONS
    # The list lives in proto.options (the shipper and the store need it): each name must be a declared option.
    assert not SECRET_OPTIONS - OPTIONS_BY_NAME.keys()


SECRET = "s3cr3t-VALUE-never-shown"


@pytest.mark.parametrize(
    "config",
    [
        {"user": "u", "password": SECRET, "api_key": "k"},
        {"password": SECRET},
        {"api_key": SECRET, "cloud_auth": "a:b"},
        {"api_key": "k", "cloud_auth": SECRET},
        {"user": "u", "password": "p", "cloud_auth": SECRET},
        {"ssl.key": SECRET},
        {"ssl.key": SECRET, "max-file": "0"},
        {"password": SECRET, "user": "u", "timeout": "junk"},
        {"pasword": SECRET},  # a typo in the name must not echo the value
        {"api-key": SECRET},
    ],
)
def test_secrets_never_appear_in_errors(config: dict[str, str]) -> None:
    with pytest.raises(LogOptionError) as info:
        parse_log_options(config)
    assert SECRET not in str(info.value)
    assert SECRET[:8] not in str(info.value)


def test_a_non_secret_bad_value_is_shown() -> None:
    with pytest.raises(LogOptionError, match="'soon'"):
        parse_log_options({"timeout": "soon"})


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"hosts": "a:9200", "endpoint": "b:9200"}, ["hosts", "endpoint"]),
        ({"hosts": "a:9200", "cloud_id": "x:y"}, ["hosts", "cloud_id"]),
        ({"endpoint": "a:9200", "cloud_id": "x:y"}, ["hosts", "cloud_id"]),
        ({"user": "u"}, ["user", "password"]),
        ({"password": "p"}, ["user", "password"]),
        ({"user": "u", "password": "p", "api_key": "k"}, ["user", "api_key"]),
        ({"api_key": "k", "cloud_auth": "a:b"}, ["api_key", "cloud_auth"]),
        ({"ssl.certificate": "/c.pem"}, ["ssl.certificate", "ssl.key"]),
        ({"ssl.key": "/k.pem"}, ["ssl.certificate", "ssl.key"]),
        ({"compress": "true", "max-file": "1"}, ["compress", "max-file"]),
        ({"max-buffer-size": "4m"}, ["max-buffer-size", "mode=non-blocking"]),
        ({"max-buffer-size": "4m", "mode": "blocking"}, ["max-buffer-size", "mode=non-blocking"]),
        ({"backoff_init": "2m", "backoff_max": "1m"}, ["backoff_init", "backoff_max"]),
        ({"backoff_init": "61"}, ["backoff_init", "backoff_max"]),
    ],
)
def test_conflicting_combinations(config: dict[str, str], names: list[str]) -> None:
    with pytest.raises(LogOptionError) as info:
        parse_log_options(config)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "config",
    [
        {"compress": "true", "max-file": "2"},
        {"compress": "false", "max-file": "1"},
        {"backoff_init": "1m", "backoff_max": "1m"},
        {"user": "u", "password": "p", "hosts": "es:9200"},
        {"cloud_id": "x:y", "cloud_auth": "u:p"},
        {"max-buffer-size": "4m", "mode": "non-blocking"},
        {"ssl.certificate": "/c", "ssl.key": "/k"},
    ],
)
def test_compatible_combinations(config: dict[str, str]) -> None:
    parse_log_options(config)


# --- parse_size / parse_duration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("123", 123),
        ("1k", 1_000),
        ("512K", 512_000),
        ("10m", 10_000_000),
        ("10M", 10_000_000),
        ("10mb", 10_000_000),
        ("10MB", 10_000_000),
        ("1g", 1_000_000_000),
        ("2t", 2 * 10**12),
        ("1p", 10**15),
        ("1.5k", 1_500),
        ("0.5m", 500_000),
        (" 7m ", 7_000_000),
        ("100b", 100),
    ],
)
def test_parse_size_is_decimal(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "m", "-1", "1x", "ten", "1.2.3k", "1 0m", "1kk", "0x10"])
def test_parse_size_rejects_junk(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h2m3s", 3723.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        ("250us", 250e-6),
        ("10ns", 10e-9),
        ("15", 15.0),
        ("0.25", 0.25),
        ("0", 0.0),
        (" 5s ", 5.0),
    ],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", " ", "s", "soon", "-1", "-5s", "5 s", "1m30", "5x", "1w", "s5", "5s junk", "nan", "inf", "-inf"]
)
def test_parse_duration_rejects_junk(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@settings(max_examples=150, deadline=None)
@given(h=st.integers(0, 100), m=st.integers(0, 1000), s=st.integers(0, 10_000), ms=st.integers(0, 999))
def test_parse_duration_sums_its_parts(h: int, m: int, s: int, ms: int) -> None:
    assert parse_duration(f"{h}h{m}m{s}s{ms}ms") == pytest.approx(h * 3600 + m * 60 + s + ms / 1000)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 10**6), unit=st.sampled_from(["", "k", "m", "g", "K", "M", "G"]))
def test_parse_size_property(n: int, unit: str) -> None:
    assert parse_size(f"{n}{unit}") == n * {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[unit.lower()]


def test_a_bad_url_option_is_echoed_without_its_credentials() -> None:
    with pytest.raises(LogOptionError) as raised:
        parse_log_options({"proxy_url": "ftp://proxyuser:hunter2@proxy:21"})
    assert "'proxy_url'" in str(raised.value) and "ftp://***@proxy:21" in str(raised.value)
    assert "hunter2" not in str(raised.value)


# ---------------------------------------------------------------------------------------------------- user regexes


@pytest.mark.parametrize("option", ["labels-regex", "env-regex"])
@pytest.mark.parametrize("pattern", [r"(a)\1", r"^(?=APP_)", r"(?<!x)y", "a{1001}"])
def test_a_regex_re2_refuses_is_refused_naming_its_option(option: str, pattern: str) -> None:
    """Python's re takes these; RE2 (linear time) does not: StartLogging says which option and why."""
    with pytest.raises(LogOptionError, match=f"log-opt '{option}'.*RE2"):
        parse_log_options({option: pattern})


def test_user_regexes_run_in_linear_time() -> None:
    # With Python's re, (a+)+$ against 30 a's and a "!" backtracks about 2**30 times (minutes).
    pattern = user_regex(parse_log_options({"labels-regex": "(a+)+$"})["labels-regex"])
    started = time.monotonic()
    assert pattern.search("a" * 100_000 + "!") is None
    assert time.monotonic() - started < 1.0
    assert pattern.search("com.example.aaa") is not None


def test_start_logging_with_a_catastrophic_regex_keeps_the_api_responsive(plugin: RunningPlugin) -> None:
    """labels-regex runs at StartLogging, on the supervisor's event loop that serves every API call."""
    fifo = plugin.fifo_dir / secrets.token_hex(32)
    os.mkfifo(fifo, 0o700)
    keep_open = os.open(fifo, os.O_RDWR)
    try:
        info = make_info(new_container_id(), config={"hosts": "http://127.0.0.1:9", "labels-regex": "(a+)+$"})
        info["ContainerLabels"] = {"a" * 30 + "!": "evil", "team": "web"}
        client = PluginClient(plugin.socket_path, timeout=5.0)
        started = time.monotonic()
        assert client.call("/LogDriver.StartLogging", {"File": str(fifo), "Info": info}) == {"_status": 200}
        assert time.monotonic() - started < 5.0
        assert client.request("/stats", None, method="GET")[0] == 200
        assert client.call("/LogDriver.StopLogging", {"File": str(fifo)}) == {"_status": 200}
    finally:
        os.close(keep_open)
        fifo.unlink()


# ---------------------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("config", [
    {"proxy_url": "proxy-user:pr0xy-s3cret@proxy:3128"},  # no scheme: not a URL, echoed
    {"proxy_url": "ftp://proxy-user:pr0xy-s3cret@proxy:3128"},
    {"max-size": "proxy-user:pr0xy-s3cret@10m"},
    {"max-size": "x:pr0xy-s3cret" + "y" * 300 + "@10m"},  # the "@" beyond the 200 characters shown
])
def test_credentials_in_a_bad_value_are_never_echoed(config: dict[str, str]) -> None:
    with pytest.raises(LogOptionError) as raised:
        parse_log_options(config)
    assert "pr0xy-s3cret" not in str(raised.value)
    assert f"'{next(iter(config))}'" in str(raised.value)


def test_log_options_repr_shows_no_secret() -> None:
    opts = parse_log_options({"hosts": "https://es:9200", "user": "elastic", "password": "pa55-s3cret",
                              "proxy_url": "http://proxy-user:pr0xy-s3cret@proxy:3128"})
    key_opts = parse_log_options({"hosts": "https://es:9200", "api_key": "id:api-s3cret",
                                  "ssl.certificate": "/c.pem", "ssl.key": "-----BEGIN KEY s3cret"})
    text = repr(opts) + str(opts) + repr(key_opts) + f"{[key_opts]}"
    for secret in ("pa55-s3cret", "pr0xy-s3cret", "api-s3cret", "BEGIN KEY"):
        assert secret not in text
    assert "elastic" in text and "proxy:3128" in text  # the rest stays readable
