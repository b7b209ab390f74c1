"""JSON log lines decoded into document fields, with Filebeat's ``json.*`` semantics (its log input).

Filebeat's order, which the shipper follows: a complete line is decoded first (:func:`decode_line`), multiline then
joins the ``json.message_key`` texts, the filters see the joined text, and :func:`apply_json` finally writes the
decoded object into the document (libbeat ``reader/readjson/json.go`` ``decode`` and ``MergeJSONFields``,
``common/jsontransform`` ``WriteJSONKeys`` and ``expandFields``).

Where this differs from Filebeat, and why (docs/processing-json.md has the user's view):

- ``message`` is the ``message_key``'s text when there is one (a string), else absent, as Filebeat has it when the
  key is ``message`` and the keys are under the root; we write it for any key name and also under ``json``, so that
  the text multiline and the filters saw is always the document's ``message``.
- ``error.*`` (``add_error_key``) is always at the root, as ECS and Filebeat's ``ndjson`` parser put it (the log
  input puts it under ``json.error`` when the keys are not under the root).
- Integers beyond 64 bits stay exact numbers (Filebeat turns them into float64 and loses digits).
- A line must hold one object and nothing else (Go's decoder ignores what follows the first value).
- Expanding dotted keys that conflict keeps the object, unexpanded, as the ``message`` text, with the error
  (Filebeat then drops every JSON key, and with them the message).
- Nesting deeper than ``MAX_DEPTH`` is a decoding error: the line ships as text.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

# Deeper JSON is shipped as text: orjson encodes at most 254 levels and the document adds two. Elasticsearch's
# index.mapping.depth.limit (20 by default) refuses a document long before; that refusal goes to dead letters.
MAX_DEPTH = 100
# 19 digits in a row: maybe an integer beyond 64 bits, which orjson silently turns into a float. Such lines (also
# long digit runs inside strings) take the exact stdlib decoder; this stdlib regex is ours, not a user's.
_LONG_DIGITS = re.compile(rb"\d{19}")
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")
_ISO8601 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})(Z|[+-]\d{4})")  # Go "...05.000Z0700"
log = logging.getLogger(__name__)
_JSON_OPTIONS = ("keys_under_root", "overwrite_keys", "add_error_key", "expand_keys", "ignore_decoding_error")


@dataclass(frozen=True)
class JsonConfig:
    """The ``json.*`` options of one container (Filebeat's defaults: every flag false, no message key)."""

    keys_under_root: bool
    overwrite_keys: bool
    add_error_key: bool
    message_key: str | None
    expand_keys: bool
    ignore_decoding_error: bool

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> JsonConfig | None:
        """From ``LogOptions.values``; None when no ``json.*`` option is given (decoding is off)."""
        given = [options.get(f"json.{name}") for name in (*_JSON_OPTIONS, "message_key")]
        if all(value is None for value in given):
            return None
        flags = {name: bool(options.get(f"json.{name}")) for name in _JSON_OPTIONS}
        key = options.get("json.message_key")
        return cls(message_key=str(key) if key is not None else None, **flags)


@dataclass
class DecodedLine:
    """One line after decoding.

    ``text``: what multiline and the filters see: the message key's value, the raw line (without its "\\n") when it
    is not JSON, or b"" for a decoded line without a string message key (then the line is an event by itself).
    ``fields``: the decoded object, None when the line is not a JSON object.
    ``error``: what went wrong (decoding, or the message key missing or not a string), set whatever
    ``add_error_key`` says; :func:`apply_json` writes it as ``error.message`` only with ``add_error_key``.
    """

    text: bytes
    fields: dict[str, Any] | None
    error: str | None
    # True: neither multiline nor the filters apply (a JSON object without a string message key, as Filebeat
    # documents); the line is an event by itself.
    own_event: bool = False


def decode_line(line: bytes, config: JsonConfig) -> DecodedLine:
    """Decode one complete line (its trailing "\\n" is ignored). Never raises."""
    if line.endswith(b"\n"):
        line = line[:-1]
    fields, error = _loads(line)
    if fields is None:
        return DecodedLine(line, None, f"Error decoding JSON: {error}")
    key = config.message_key
    if not key:
        return DecodedLine(b"", fields, None, own_event=True)
    if key not in fields:
        return DecodedLine(b"", fields, f"Key '{key}' not found", own_event=True)
    value = fields[key]
    if not isinstance(value, str):
        return DecodedLine(b"", fields, f"Value of key '{key}' is not a string", own_event=True)
    return DecodedLine(value.encode(), fields, None)


def _loads(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """The line's object, or None and why not. Invalid UTF-8 is replaced by U+FFFD first, as for plain lines."""
    text = line.decode("utf-8", "replace")
    if _LONG_DIGITS.search(line):
        value, error = _loads_exact(text)
    else:
        try:
            value, error = orjson.loads(text), ""
        except orjson.JSONDecodeError as exc:
            value, error = None, str(exc)
    if error:
        return None, error
    if not isinstance(value, dict):
        # Filebeat decodes into a map: a scalar or an array is a decoding error, null too.
        return None, f"not a JSON object but {_json_kind(value)}"
    if line.count(b"{") + line.count(b"[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        return None, f"nested deeper than {MAX_DEPTH} levels"
    return value, ""


def _loads_exact(text: str) -> tuple[Any, str]:
    """The stdlib decoder: exact integers of any size. Rejects what orjson rejects (NaN, Infinity, out-of-range
    floats); replaces lone surrogates (orjson refuses them) by U+FFFD, as Go's decoder does."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        return None, str(exc) or type(exc).__name__
    return _fix_surrogates(value), ""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _fix_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, dict):
        return {_fix_surrogates(k): _fix_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix_surrogates(v) for v in value]
    return value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _depth(value: Any) -> int:
    """Nesting levels of objects and arrays, without recursion (the value may be 1000 levels deep)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def join_fields(first: dict[str, Any] | None, later: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fields of an event when a later line joins it. Filebeat's multiline adds each line's fields with a
    shallow ``Update`` of ``{"json": object}``, so the last JSON line's object replaces the earlier ones (the
    message key then gets the joined text in :func:`apply_json`); a line that is not JSON changes nothing."""
    return later if later is not None else first


def apply_json(document: dict[str, Any], text: str | None, decoded_fields: dict[str, Any] | None,
               error: str | None, config: JsonConfig, problems: list[str] | None = None) -> dict[str, Any]:
    """Write an event's decoded JSON into ``document`` (the plugin's own fields, without ``message``) and return it.

    ``text``: the event's text (the raw line, or the message key's value joined by multiline); ``decoded_fields``:
    the event's object (None: not JSON, ``text`` ships as a plain ``message``), consumed; ``error``: the
    :class:`DecodedLine`'s. ``problems`` gets a short name for each thing that did not apply (an expansion
    conflict, a refused ``@timestamp`` or ``type``) so the caller can log it once; their details go in ``error.*``.
    """
    errors = [error] if error else []
    if decoded_fields is None:
        document["message"] = text or ""
        return _with_error(document, errors, config)
    fields = dict(decoded_fields)
    if config.message_key and text is not None and error is None:
        # The joined text replaces the first line's (MergeJSONFields). Not when the key was missing or not a
        # string (``error`` says so): Filebeat would then write "" there, over the JSON's own value.
        fields[config.message_key] = text
        document["message"] = text
    if config.expand_keys:
        try:
            fields = _expanded(fields)
        except _ExpandConflict as exc:
            _note(problems, "expand_keys conflict")
            errors.append(str(exc))
            # The object stays readable as text rather than lost (Filebeat writes none of its keys).
            document["message"] = dumps(fields).decode()
            return _with_error(document, errors, config)
    if config.keys_under_root:
        _write_keys(document, fields, config.overwrite_keys, errors, problems)
    else:
        _deep_update(document, {"json": fields}, overwrite=False)
    return _with_error(document, errors, config)


def _with_error(document: dict[str, Any], errors: list[str], config: JsonConfig) -> dict[str, Any]:
    if errors and config.add_error_key:
        # Ours replaces an "error" the JSON had only when add_error_key asks for it and something went wrong.
        error = document.get("error")
        if not isinstance(error, dict):
            error = document["error"] = {}
        error["message"] = "; ".join(errors)
        error["type"] = "json"
    return document


def _note(problems: list[str] | None, name: str) -> None:
    if problems is not None:
        problems.append(name)


def _write_keys(document: dict[str, Any], fields: dict[str, Any], overwrite: bool, errors: list[str],
                problems: list[str] | None) -> None:
    """libbeat's WriteJSONKeys: without overwrite the plugin's fields win (a deep merge that keeps what is there);
    with it the JSON's keys replace them, ``@timestamp`` only by an RFC 3339 / ISO 8601 string."""
    metadata_free = {key: value for key, value in fields.items() if key != "@metadata"}  # Filebeat's event meta:
    if not overwrite:                                                                   # never indexed
        metadata_free.pop("@timestamp", None)
        _deep_update(document, metadata_free, overwrite=False)
        return
    if "@timestamp" in metadata_free:
        value = metadata_free.pop("@timestamp")
        timestamp = _parse_timestamp(value) if isinstance(value, str) else None
        if timestamp is not None:
            document["@timestamp"] = timestamp
        else:
            _note(problems, "@timestamp not overwritten")
            errors.append("@timestamp not overwritten (not string)" if not isinstance(value, str)
                          else f"@timestamp not overwritten (parse error on {value[:64]})")
    if "type" in metadata_free:
        value = metadata_free.pop("type")
        if isinstance(value, str) and value and not value.startswith("_"):
            document["type"] = value
        else:
            _note(problems, "type not overwritten")
            errors.append("type not overwritten (not string)" if not isinstance(value, str)
                          else f"type not overwritten (invalid value [{value[:64]}])")
    _deep_update(document, metadata_free, overwrite=True)


def _deep_update(target: dict[str, Any], source: dict[str, Any], overwrite: bool) -> None:
    """mapstr's DeepUpdate / DeepUpdateNoOverwrite: objects merge key by key; any other clash keeps the target's
    value, or takes the source's with ``overwrite``."""
    for key, value in source.items():
        if key not in target:
            target[key] = value
            continue
        old = target[key]
        if isinstance(old, dict) and isinstance(value, dict):
            _deep_update(old, value, overwrite)
        elif overwrite:
            target[key] = value


def _parse_timestamp(value: str) -> str | None:
    """Go's time.Parse with RFC3339, then "2006-01-02T15:04:05.000Z0700" (libbeat's parseTimestamp), as the
    plugin writes timestamps: UTC, nanoseconds."""
    match = _RFC3339.fullmatch(value) or _ISO8601.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    offset = dt.timedelta(0)
    if zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        if hours > 23 or minutes > 59:
            return None
        offset = dt.timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone(offset))
        moment = moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction.ljust(9, '0')}Z"


class _ExpandConflict(ValueError):
    pass


def _expanded(obj: dict[str, Any]) -> dict[str, Any]:
    """libbeat's expandFields (``{"a.b": 1}`` -> ``{"a": {"b": 1}}``, objects merged), without changing ``obj``.
    Raises _ExpandConflict with Filebeat's wording when a path runs into a value that is not an object."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            try:
                value = _expanded(value)
            except _ExpandConflict as exc:
                raise _ExpandConflict(f"error expanding {_go_quote(key)}: {exc}") from None
        _put(out, key, value)
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = out
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise _ExpandConflict(f"cannot expand {_go_quote(key)}: found conflicting key")
        node = child
    last = parts[-1]
    if last not in node:
        node[last] = value
        return
    old = node[last]
    if not isinstance(value, dict):
        raise _ExpandConflict(f"cannot expand {_go_quote(key)}: found existing ({_json_kind(old)}) value")
    if not isinstance(old, dict):
        raise _ExpandConflict(f"cannot expand {_go_quote(key)}: found conflicting key")
    _merge(value, old, key)
    node[last] = value


def _merge(into: dict[str, Any], other: dict[str, Any], key: str) -> None:
    for name, value in other.items():
        if name not in into:
            into[name] = value
        elif isinstance(into[name], dict) and isinstance(value, dict):
            _merge(into[name], value, key)
        else:
            raise _ExpandConflict(f"cannot expand {_go_quote(key)}: cannot merge {_go_quote(name)}")


def _go_quote(text: str) -> str:
    return orjson.dumps(text).decode()


def dumps(document: dict[str, Any]) -> bytes:
    """The document as JSON. orjson refuses integers beyond 64 bits: those documents (rare) take the stdlib
    encoder, which writes them exactly; non-ASCII is escaped there, so a lone surrogate never breaks it."""
    try:
        return orjson.dumps(document)
    except TypeError:  # orjson.JSONEncodeError: "Integer exceeds 64-bit range"
        return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


class JsonProblems:
    """One container's JSON troubles, counted; each kind logged once (never per line: a container printing text
    under ``json.*`` would flood the plugin's log). A decoding error is not logged with ``ignore_decoding_error``.
    The log never holds line content: the wording comes from the decoder, or names the problem."""

    def __init__(self, container_id: str, config: JsonConfig) -> None:
        self.container_id = container_id
        self.config = config
        self.decoding_errors = 0
        self.other = 0  # expansion conflicts, refused @timestamp / type
        self._logged: set[str] = set()

    def note_line(self, decoded: DecodedLine) -> None:
        if decoded.fields is not None:
            return
        self.decoding_errors += 1
        if self.decoding_errors == 1 and not self.config.ignore_decoding_error:
            log.warning("container %s: a line is not a JSON object (%s); it ships as a plain message. Later ones "
                        "are counted, not logged (json.ignore_decoding_error=true silences this)",
                        self.container_id[:12], decoded.error)

    def note_problems(self, problems: list[str]) -> None:
        for problem in problems:
            self.other += 1
            if problem not in self._logged:
                self._logged.add(problem)
                log.warning("container %s: JSON %s; the event ships, this is logged once per container",
                            self.container_id[:12], problem)
