"""Log options (``--log-opt``): declared once, validated once at StartLogging into a frozen ``LogOptions``.

Every option is an ``Option`` record: its name, a parser that normalises the string or raises ``ValueError``,
its default, a one-line description and whether it is a secret (never echoed in an error; the secret names, the
option error and the redaction helpers live in ``proto.options``, as the shipper and the local store need them too).
Docker passes its own keys (``mode``, ``max-buffer-size``, ``cache-*``) through to plugins; they are accepted and kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import re2

from proto.options import SECRET_OPTIONS, LogOptionError, redacted_config, shown_value, user_regex
from supervisor.elastic_names import respelled, to_our_names
from supervisor.tag import parse_tag

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("is not a boolean (true or false)")


def parse_duration(value: str) -> float:
    """Go-style duration (``500ms``, ``1m30s``, also ``7d``) or plain seconds; returns seconds."""
    v = value.strip()
    try:
        seconds = float(v)
    except ValueError:
        pos, seconds = 0, 0.0
        for m in _DURATION_PART.finditer(v):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(v) or not v:
            raise ValueError("is not a duration (e.g. 30s, 500ms, 1m)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a finite, non-negative duration")
    return seconds


def parse_size(value: str) -> int:
    """Docker's size syntax (go-units, decimal): ``10m`` = 10 000 000 bytes."""
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise ValueError("is not a size (e.g. 10m, 512k, 1g)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_count(value: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ValueError("is not a whole number") from None
    if n < 0:
        raise ValueError("must not be negative")
    return n


def parse_positive(value: str) -> int:
    n = parse_count(value)
    if n == 0:
        raise ValueError("must be at least 1")
    return n


def parse_retries(value: str) -> int:
    """-1 (the default) retries for ever."""
    try:
        n = int(value.strip())
    except ValueError:
        raise ValueError("is not a whole number") from None
    if n < -1:
        raise ValueError("must be -1 (for ever) or more")
    return n


def parse_level(value: str) -> int:
    n = parse_count(value)
    if n > 9:
        raise ValueError("must be between 0 (off) and 9")
    return n


def parse_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse_fields(value: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in parse_list(value):
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"needs key=value pairs separated by commas; {item!r} has no key=")
        pairs.append((key.strip(), val.strip()))
    return tuple(pairs)


def parse_regex(value: str) -> str:
    try:
        user_regex(value)
    except re2.error as exc:
        why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"is not a regular expression RE2 accepts ({why}; RE2, as Docker's Go regexp, has no "
                         "backreferences or lookaround)") from None
    return value


def parse_regex_list(value: str) -> tuple[str, ...]:
    """A comma list of RE2 regexes, split the way Filebeat's hints split one (``getStringAsList``: at every comma,
    each item trimmed), except that ``\\,`` is a comma inside an item (``\\d{1\\,3}`` is ``\\d{1,3}``; as a regex
    ``\\,`` and ``,`` both match a comma) and empty items are dropped (Filebeat would keep ``""``, which matches
    every line: one stray comma in exclude_lines would drop everything)."""
    items, current, chars = [], [], iter(value)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            current.append("," if escaped == "," else char + escaped)  # "\\,": an escaped backslash, then a separator
        elif char == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    regexes = tuple(item.strip() for item in items if item.strip())
    for number, regex in enumerate(regexes, 1):
        try:
            parse_regex(regex)
        except ValueError as exc:
            raise ValueError(f"(item {number}, {regex[:200]!r}) {exc}") from None
    return regexes


def parse_seconds(value: str) -> float:
    seconds = parse_duration(value)
    if seconds == 0:
        raise ValueError("must be more than 0")
    return seconds


def parse_url(value: str) -> str:
    if any(char.isspace() for char in value.strip()):
        raise ValueError("is not a URL (e.g. http://proxy:3128): it holds a space")
    parsed = urlparse(value.strip())
    if parsed.scheme not in {"http", "https", "socks5"} or not parsed.hostname:
        raise ValueError("is not a URL (e.g. http://proxy:3128)")
    return value.strip()


def parse_text(value: str) -> str:
    return value


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[str], Any]
    default: Any
    doc: str

    @property
    def secret(self) -> bool:
        """Never echoed in an error nor written where secrets must not go (the list is ``proto.options``'s)."""
        return self.name in SECRET_OPTIONS


# Processing in the shipper (issue #13), with Filebeat's names and meaning; also settable per container by the
# co.elastic.logs/ labels (supervisor/hints.py). The README's "Processing" section says in which order they apply.
PROCESSING_OPTIONS: tuple[Option, ...] = (
    Option("multiline.type", one_of("pattern", "count", "while_pattern"), None,
           "join lines into one event: pattern, count or while_pattern (pattern when only multiline.pattern is given)"),
    Option("multiline.pattern", parse_regex, None, "RE2 regex a line is matched against (pattern, while_pattern)"),
    Option("multiline.negate", parse_bool, False, "true: the lines NOT matching multiline.pattern are joined"),
    Option("multiline.match", one_of("after", "before"), "after",
           "after or before: whether joined lines follow or precede the line that starts or ends the event"),
    Option("multiline.flush_pattern", parse_regex, None, "RE2 regex of the line that ends an event (pattern type)"),
    Option("multiline.count_lines", parse_positive, None, "lines per event (multiline.type=count; at least 1)"),
    Option("multiline.max_lines", parse_positive, 500, "lines one event holds at most; later lines are dropped"),
    Option("multiline.timeout", parse_seconds, 5.0, "an open event is sent after this long without a new line"),
    Option("json.keys_under_root", parse_bool, None,
           "true: decoded keys at the top, not under json (any json.* option turns JSON decoding on)"),
    Option("json.overwrite_keys", parse_bool, None, "decoded keys replace the plugin's fields of the same name"),
    Option("json.add_error_key", parse_bool, None, "a line that is not JSON gets error.message and error.type: json"),
    Option("json.message_key", parse_text, None, "the decoded key whose text multiline and the line filters work on"),
    Option("json.expand_keys", parse_bool, None, "dotted decoded keys become nested objects"),
    Option("json.ignore_decoding_error", parse_bool, None, "no error is logged for a line that is not JSON"),
    Option("include_lines", parse_regex_list, (),
           "ship only the events matching one of these RE2 regexes (comma list; \\, for a comma in one)"),
    Option("exclude_lines", parse_regex_list, (),
           "drop the events matching one of these RE2 regexes, after include_lines (comma list; \\, for a comma)"),
)

OPTIONS: tuple[Option, ...] = (
    # Docker's own keys, passed through to every plugin.
    Option("mode", one_of("blocking", "non-blocking"), "blocking", "dockerd's delivery mode (handled by dockerd)"),
    Option("max-buffer-size", parse_size, None, "dockerd's buffer in non-blocking mode (handled by dockerd)"),
    Option("cache-disabled", parse_bool, None, "dockerd's dual-logging cache (unused: the plugin reads logs)"),
    Option("cache-max-size", parse_size, None, "dockerd's dual-logging cache size (unused)"),
    Option("cache-max-file", parse_count, None, "dockerd's dual-logging cache files (unused)"),
    Option("cache-compress", parse_bool, None, "dockerd's dual-logging cache compression (unused)"),
    Option("labels", parse_list, (), "container labels to add to each document (comma list)"),
    Option("labels-regex", parse_regex, None, "container labels matching this regex (RE2 syntax, as Docker) are added"),
    Option("env", parse_list, (), "container environment variables to add (comma list; may hold secrets)"),
    Option("env-regex", parse_regex, None, "environment variables matching this regex (RE2 syntax) are added"),
    Option("tag", parse_tag, None, "Docker's log tag template, e.g. {{.ImageName}}/{{.Name}}; rendered into the "
           "document's tags (see Processing)"),
    # The local store.
    Option("max-size", parse_size, 10_000_000, "rotate the local file at this size (10m)"),
    Option("max-file", parse_positive, 5, "local files kept per container, current one included"),
    Option("compress", parse_bool, False, "gzip rotated local files"),
    # Elasticsearch (names as in Elastic's plugin).
    Option("hosts", parse_list, (), "Elasticsearch nodes, comma list of host:port or URLs"),
    Option("endpoint", parse_list, (), "older name of hosts"),
    Option("cloud_id", parse_text, None, "Elastic Cloud id (replaces hosts)"),
    Option("user", parse_text, None, "basic-auth user"),
    Option("password", parse_text, None, "basic-auth password"),
    Option("api_key", parse_text, None, "API key, id:key or base64"),
    Option("cloud_auth", parse_text, None, "Elastic Cloud user:password"),
    Option("index", parse_text, "logs-docker-default", "target index or data stream; %{+yyyy.MM.dd} and %{[field]}"),
    Option("pipeline", parse_text, None, "ingest pipeline"),
    # Index template and lifecycle policy of a custom index (Beats' names; shipper/index_setup.py).
    Option("setup.template.enabled", parse_bool, True, "install an index template for a custom index if absent"),
    Option("setup.template.name", parse_text, None, "its name (default: the index up to its first %{...}, trimmed)"),
    Option("setup.template.pattern", parse_text, None,
           "its index pattern (default: the index up to its first %{...}, then *)"),
    Option("setup.ilm.enabled", parse_bool, False,
           "a custom index becomes a data stream rolled over by an ILM policy (installed if absent)"),
    Option("setup.ilm.policy_name", parse_text, "elastic-logging-plugin", "the ILM policy's name"),
    Option("timeout", parse_duration, 90.0, "per-request timeout, response headers included (more than 0)"),
    Option("backoff_init", parse_duration, 1.0, "first retry delay"),
    Option("backoff_max", parse_duration, 60.0, "longest retry delay"),
    Option("max_retries", parse_retries, -1, "retries of a retryable failure; -1 = for ever"),
    Option("bulk_max_size", parse_positive, 1600, "documents per bulk request"),
    Option("bulk_max_bytes", parse_size, 10_000_000, "bytes per bulk request"),
    Option("flush_interval", parse_duration, 1.0, "longest wait before a partial bulk is sent"),
    Option("compression_level", parse_level, 1, "gzip level of bulk bodies, 0 = off"),
    Option("proxy_url", parse_url, None, "HTTP proxy"),
    Option("name", parse_text, None, "agent.name in each document"),
    Option("tags", parse_list, (), "tags added to each document (comma list)"),
    Option("fields", parse_fields, (), "custom top-level fields, k=v,k2=v2"),
    Option("dead_letter_index", parse_text, None, "index for documents Elasticsearch rejects"),
    Option("ssl.certificate_authorities", parse_text, None,
           "CA certificates: PEM text or the path of a regular file (not a link)"),
    Option(
        "ssl.verification_mode",
        one_of("full", "certificate", "none"),
        "full",
        "TLS verification: full, certificate, none",
    ),
    Option("ssl.certificate", parse_text, None,
           "client certificate: PEM text or the path of a regular file (not a link)"),
    Option("ssl.key", parse_text, None, "client key: PEM text or the path of a regular file (not a link)"),
    *PROCESSING_OPTIONS,
)
OPTIONS_BY_NAME: dict[str, Option] = {opt.name: opt for opt in OPTIONS}


@dataclass(frozen=True)
class LogOptions:
    """The validated options of one logger; ``values`` holds every option, defaults filled in."""

    values: Mapping[str, Any] = field(default_factory=dict)
    # False when the container's label co.elastic.logs/enabled=false asks for local logging only (supervisor/hints.py)
    shipping: bool = True

    def __repr__(self) -> str:
        # The values hold passwords and keys: a repr ends up in logs and tracebacks.
        return f"LogOptions({redacted_config(self.values)!r}{'' if self.shipping else ', shipping=False'})"

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def ships(self) -> bool:
        """Whether this container's lines go to Elasticsearch (otherwise they are only stored locally)."""
        return self.shipping and bool(self.values["hosts"] or self.values["cloud_id"])


def parse_log_options(config: Mapping[str, Any] | None) -> LogOptions:
    """Validate Docker's ``Info.Config``; raise ``LogOptionError`` naming the first bad option.
    Elastic's names (``output.elasticsearch.hosts``, ``cloud.id``, ...) are ours under another name."""
    ours, spelled = to_our_names(config)
    try:
        return _parse_our_names(ours)
    except LogOptionError as exc:
        raise respelled(exc, spelled) from None


def _parse_our_names(config: Mapping[str, Any] | None) -> LogOptions:
    if config is not None and not isinstance(config, Mapping):
        raise LogOptionError("Info.Config (the log-opts) must be an object of strings")
    raw = dict(config or {})
    unknown = sorted(k for k in raw if k not in OPTIONS_BY_NAME)
    if unknown:
        raise LogOptionError(f"unknown log-opt {unknown[0]!r} (see the plugin's README for the options it takes)")
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        if opt.name not in raw:
            values[opt.name] = opt.default
            continue
        value = raw[opt.name]
        if not isinstance(value, str):
            raise LogOptionError(f"log-opt {opt.name!r} must be a string")
        try:
            values[opt.name] = opt.parse(value)
        except ValueError as exc:
            shown = "the value given" if opt.secret else repr(shown_value(value))
            raise LogOptionError(f"log-opt {opt.name!r}: {shown} {exc}") from None
    _check_combinations(values, raw)
    return LogOptions(values)


def _check_combinations(values: dict[str, Any], raw: Mapping[str, Any]) -> None:
    if raw.get("hosts") and raw.get("endpoint"):
        raise LogOptionError("log-opts 'hosts' and 'endpoint' are the same option; give only one")
    if values["endpoint"]:
        values["hosts"] = values["endpoint"]
    if values["hosts"] and values["cloud_id"]:
        raise LogOptionError("log-opts 'hosts' and 'cloud_id' conflict; give only one")
    basic = values["user"] is not None or values["password"] is not None
    if basic and (values["user"] is None or values["password"] is None):
        raise LogOptionError("log-opts 'user' and 'password' go together")
    given = (("user", basic), ("api_key", values["api_key"]), ("cloud_auth", values["cloud_auth"]))
    methods = [name for name, on in given if on]
    if len(methods) > 1:
        named = " and ".join(repr(m) for m in methods)
        raise LogOptionError(f"log-opts {named} conflict; choose one way to authenticate")
    if (values["ssl.certificate"] is None) != (values["ssl.key"] is None):
        raise LogOptionError("log-opts 'ssl.certificate' and 'ssl.key' go together")
    if values["compress"] and values["max-file"] == 1:
        raise LogOptionError("log-opt 'compress' cannot be enabled when 'max-file' is 1")
    if raw.get("max-buffer-size") and values["mode"] != "non-blocking":
        raise LogOptionError("log-opt 'max-buffer-size' is only supported with 'mode=non-blocking'")
    if values["backoff_init"] > values["backoff_max"]:
        raise LogOptionError("log-opt 'backoff_init' must not exceed 'backoff_max'")
    _check_multiline(values, raw)


_PATTERN_ONLY = ("multiline.pattern", "multiline.negate", "multiline.flush_pattern")


def _check_multiline(values: dict[str, Any], raw: Mapping[str, Any]) -> None:
    """Filebeat's multiline combinations: an option that cannot act is refused rather than silently ignored."""
    kind = values["multiline.type"]
    given = sorted(name for name in raw if name.startswith("multiline."))
    if kind is None and values["multiline.pattern"] is None:
        if given:
            raise LogOptionError(f"log-opt {given[0]!r} needs 'multiline.pattern' (or 'multiline.type=count')")
        return
    if kind == "count":
        if values["multiline.count_lines"] is None:
            raise LogOptionError("log-opt 'multiline.type=count' needs 'multiline.count_lines' (at least 1)")
        wrong = [name for name in _PATTERN_ONLY if name in raw]
        if wrong:
            raise LogOptionError(f"log-opt {wrong[0]!r} does not apply to 'multiline.type=count'")
        return
    if values["multiline.pattern"] is None:
        raise LogOptionError(f"log-opt 'multiline.type={kind}' needs 'multiline.pattern'")
    if "multiline.count_lines" in raw:
        raise LogOptionError("log-opt 'multiline.count_lines' applies only to 'multiline.type=count'")
