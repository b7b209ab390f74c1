"""JSON log lines decoded into document fields, with Filebeat's ``json.*`` semantics (its log input).

Filebeat's order, which the shipper follows: a complete line is decoded first (:func:`decode_line`), multiline then
joins the ``json.message_key`` texts, the filters see the joined text, and :func:`apply_json` finally writes the
decoded object into the document (libbeat ``reader/readjson/json.go`` ``decode`` and ``MergeJSONFields``,
``common/jsontransform`` ``WriteJSONKeys`` and ``expandFields``).

Where this differs from Filebeat, and why (docs/json-logs.md has the user's view):

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

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from shipper.json_fields import ExpandConflict, deep_update, expanded, json_kind, note, write_keys

# Deeper JSON is shipped as text: orjson encodes at most 254 levels and the document adds two. Elasticsearch's
# index.mapping.depth.limit (20 by default) refuses a document long before; that refusal goes to dead letters.
MAX_DEPTH = 100
# 19 digits in a row: maybe an integer beyond 64 bits, which orjson silently turns into a float. Such lines (also
# long digit runs inside strings) take the exact stdlib decoder. Found by mapping digits to "0" and the rest to
# ".": 1.7 us for a 300-byte line, where re's \d{19} took 11.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x2E for byte in range(256))
_LONG_DIGITS = b"0" * 19
log = logging.getLogger("elp.shipper")
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
    if _LONG_DIGITS in line.translate(_DIGITS_AS_ZEROS):
        value, error = _loads_exact(text)
    else:
        try:
            value, error = orjson.loads(text), ""
        except orjson.JSONDecodeError as exc:
            value, error = None, str(exc)
            if "surrogate" in error:  # a lone "\ud800" escape: Go's decoder makes it U+FFFD, orjson refuses it
                value, error = _loads_exact(text)
    if error:
        return None, error
    if not isinstance(value, dict):
        # Filebeat decodes into a map: a scalar or an array is a decoding error, null too.
        return None, f"not a JSON object but {json_kind(value)}"
    if len(line) > 2 * MAX_DEPTH and line.count(b"{") + line.count(b"[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
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

    Only ``document`` itself changes: an object in it that JSON keys merge into is copied first, so its nested
    objects may be shared (e.g. a builder's constant fields, given as ``{**constant, ...}``: no deep copy per line).

    ``text``: the event's text (the raw line, or the message key's value joined by multiline); ``decoded_fields``:
    the event's object (None: not JSON, ``text`` ships as a plain ``message``), consumed; ``error``: the
    :class:`DecodedLine`'s. ``problems`` gets a short name for each thing that did not apply (an expansion
    conflict, a refused ``@timestamp`` or ``type``) so the caller can log it once; their details go in ``error.*``.
    """
    errors = [error] if error else []
    if decoded_fields is None:
        document["message"] = text or ""
        return _with_error(document, errors, config)
    fields = decoded_fields
    if config.message_key and text is not None and error is None:
        # The joined text replaces the first line's (MergeJSONFields). Not when the key was missing or not a
        # string (``error`` says so): Filebeat would then write "" there, over the JSON's own value.
        fields[config.message_key] = text
        document["message"] = text
    if config.expand_keys:
        try:
            fields = expanded(fields)
        except ExpandConflict as exc:
            note(problems, "expand_keys conflict")
            errors.append(str(exc))
            # The object stays readable as text rather than lost (Filebeat writes none of its keys). expanded()
            # left ``fields`` as it was.
            document["message"] = dumps(fields).decode()
            return _with_error(document, errors, config)
    if config.keys_under_root:
        write_keys(document, fields, config.overwrite_keys, errors, problems)
    else:
        deep_update(document, {"json": fields}, overwrite=False)
    return _with_error(document, errors, config)


def _with_error(document: dict[str, Any], errors: list[str], config: JsonConfig) -> dict[str, Any]:
    if errors and config.add_error_key:
        # Ours replaces an "error" the JSON had only when add_error_key asks for it and something went wrong.
        error = document.get("error")
        document["error"] = {**(error if isinstance(error, dict) else {}), "message": "; ".join(errors),
                             "type": "json"}
    return document


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
