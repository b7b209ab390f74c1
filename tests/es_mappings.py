"""Dynamic mappings for the Elasticsearch stand-in: what an index learned from its first documents, and the
refusals of Elasticsearch 8 when a later document does not fit (tests/es_standin.py uses one per write index).

Modelled, with the texts of ES 8.x (``DocumentParsingException`` since 8.8: type ``document_parsing_exception``,
the reason prefixed with the token's ``[line:column]``, approximated here), status 400 per item:

* a field's type comes from its first value (ES's DynamicFieldsBuilder): integer -> ``long`` (also beyond 64
  bits, which then does not fit), other number -> ``float``, boolean -> ``boolean``, string -> ``text`` with a
  ``.keyword`` multi-field (two fields), or ``keyword`` alone in ``logs-*-*`` data streams (the ``ecs@mappings``
  template); an object -> ``object``; arrays take their elements' type; null maps nothing.
* a later value that does not fit: "failed to parse field [f] of type [long] in document with id 'x'. Preview of
  field's value: 'v'" with the cause (``For input string``, ``is out of range for a long``, ``Can't get text on a
  START_OBJECT``); a concrete value where an object is mapped: "object mapping for [f] tried to parse field [f] as
  object, but found a concrete value"; a dotted or nested path through a leaf: "Could not dynamically add mapping
  for field [a.b]. Existing mapping for [a] must be of type object but found [long]."
* ``index.mapping.total_fields.limit`` (1000; objects, leaves and multi-fields count): "failed to parse: Limit of
  total fields [1000] has been exceeded while adding new fields [n]"
  (reference/8.15/mapping-settings-limit.html; the answer as an 8.x cluster gives it, tests/fixtures/es8).
* ``index.mapping.depth.limit`` (20; depth = an object path's dots + 2, so 19 nested objects at most):
  "Limit of mapping depth [20] has been exceeded due to object field [a.b...]", an ``illegal_argument_exception``
  of the mapping update.

Not modelled: date detection (a date-like string maps as text), numeric detection (off in ES too), coercion of
booleans into numbers, explicit mappings and templates other than the data streams' strings, runtime fields.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

JsonObj = dict[str, Any]
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_LONG_DIGITS = re.compile(rb"\d{19}")


class _Refused(Exception):
    def __init__(self, error: JsonObj) -> None:
        super().__init__(error.get("reason"))
        self.error = error


@dataclass
class DynamicMapping:
    """One index's dynamic mapping. :meth:`admit` checks a document and, when it fits, learns its new fields."""

    strings_as_keyword: bool = False
    total_fields_limit: int = 1000
    depth_limit: int = 20
    types: dict[str, str] = field(default_factory=dict)  # full path -> object | long | float | boolean | text...
    total_fields: int = 0

    def __post_init__(self) -> None:
        if self.strings_as_keyword:  # a data stream: its template maps @timestamp as a date (checked elsewhere)
            self.types.setdefault("@timestamp", "date")
            self.total_fields = len(self.types)

    def admit(self, source: JsonObj, source_line: bytes, doc_id: str) -> JsonObj | None:
        """The error ES would give for this document, or None (and its new fields are now mapped)."""
        if _LONG_DIGITS.search(source_line):  # orjson turned integers beyond 64 bits into floats: read them exactly
            try:
                source = json.loads(source_line)
            except ValueError:
                pass
        walk = _Walk(self, doc_id, source_line)
        try:
            walk.object(source, "")
        except _Refused as refused:
            return refused.error
        added = sum(2 if kind == "text" else 1 for kind in walk.added.values())
        if self.total_fields + added > self.total_fields_limit:
            inner = f"Limit of total fields [{self.total_fields_limit}] has been exceeded while adding new fields " \
                    f"[{added}]"
            return {"type": "document_parsing_exception", "reason": f"[1:{len(source_line)}] failed to parse: {inner}",
                    "caused_by": {"type": "illegal_argument_exception", "reason": inner}}
        self.types.update(walk.added)
        self.total_fields += added
        return None


@dataclass
class _Walk:
    """One document's pass over the mapping; ``added``: the fields it maps (kept only if it is admitted)."""

    mapping: DynamicMapping
    doc_id: str
    line: bytes
    added: dict[str, str] = field(default_factory=dict)

    def kind(self, path: str) -> str | None:
        return self.mapping.types.get(path) or self.added.get(path)

    def column(self, name: str) -> int:
        at = self.line.find(json.dumps(name).encode())
        return at + len(json.dumps(name).encode()) + 2 if at >= 0 else 1

    def object(self, obj: JsonObj, prefix: str) -> None:
        for key, value in obj.items():
            if key == "":
                inner = "Field name cannot be an empty string"
                raise _Refused({"type": "document_parsing_exception",
                                "reason": f"[1:{self.column(key)}] failed to parse: {inner}",
                                "caused_by": {"type": "illegal_argument_exception", "reason": inner}})
            if key.strip() == "":
                raise _Refused({"type": "document_parsing_exception",
                                "reason": f"[1:{self.column(key)}] Field name cannot contain only whitespace: "
                                          f"[{prefix}{key}]"})
            parts = key.split(".")  # ES 8 expands dotted names into objects
            path = prefix.rstrip(".")
            for part in parts[:-1]:
                path = f"{path}.{part}" if path else part
                self.ensure_object(path, f"{prefix}{key}", key)
            leaf = f"{path}.{parts[-1]}" if path else parts[-1]
            self.value(leaf, parts[-1], value, key)

    def ensure_object(self, path: str, full: str, key: str) -> None:
        kind = self.kind(path)
        if kind is None:
            depth = path.count(".") + 2
            if depth > self.mapping.depth_limit:
                raise _Refused({"type": "illegal_argument_exception",
                                "reason": f"Limit of mapping depth [{self.mapping.depth_limit}] has been exceeded "
                                          f"due to object field [{path}]"})
            self.added[path] = "object"
        elif kind != "object":
            inner = (f"Could not dynamically add mapping for field [{full}]. Existing mapping for [{path}] must be of "
                     f"type object but found [{kind}].")
            raise _Refused({"type": "document_parsing_exception",
                            "reason": f"[1:{self.column(key)}] failed to parse: {inner}",
                            "caused_by": {"type": "illegal_argument_exception", "reason": inner}})

    def value(self, path: str, name: str, value: Any, key: str) -> None:
        if value is None:
            return
        if isinstance(value, list):
            for item in value:
                self.value(path, name, item, key)
            return
        kind = self.kind(path)
        if isinstance(value, dict):
            if kind is not None and kind != "object":
                raise self.field_error(path, kind, value, key, "illegal_state_exception",
                                       f"Can't get text on a START_OBJECT at 1:{self.column(key)}")
            self.ensure_object(path, path, key)
            self.object(value, f"{path}.")
            return
        if kind == "object":
            raise _Refused({"type": "document_parsing_exception",
                            "reason": f"[1:{self.column(key)}] object mapping for [{path}] tried to parse field "
                                      f"[{name}] as object, but found a concrete value"})
        if kind is None:
            kind = self.added[path] = self.new_kind(value)
        cause = _misfit(kind, value)
        if cause is not None:
            raise self.field_error(path, kind, value, key, "illegal_argument_exception", cause)

    def new_kind(self, value: Any) -> str:
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int):
            return "long"
        if isinstance(value, float):
            return "float"
        return "keyword" if self.mapping.strings_as_keyword else "text"

    def field_error(self, path: str, kind: str, value: Any, key: str, cause_type: str, cause: str) -> _Refused:
        return _Refused({
            "type": "document_parsing_exception",
            "reason": f"[1:{self.column(key)}] failed to parse field [{path}] of type [{kind}] in document with id "
                      f"'{self.doc_id}'. Preview of field's value: '{_preview(value)}'",
            "caused_by": {"type": cause_type, "reason": cause}})


def _misfit(kind: str, value: Any) -> str | None:
    """Why ``value`` does not fit a field of type ``kind`` (the cause ES gives), or None."""
    if kind in ("long", "float") and not isinstance(value, bool):
        number: float | int
        if isinstance(value, str):
            try:
                number = int(value) if kind == "long" and value.strip().lstrip("+-").isdigit() else float(value)
            except ValueError:
                return f'For input string: "{value}"'
            if isinstance(number, float) and not math.isfinite(number):
                return f'For input string: "{value}"'
        else:
            number = value
        if kind == "long" and not _LONG_MIN <= number <= _LONG_MAX:
            return f"Value [{value}] is out of range for a long"
        return None
    if kind == "boolean" and isinstance(value, str) and value not in ("true", "false", ""):
        return f"Failed to parse value [{value}] as only [true] or [false] are allowed."
    return None


def _preview(value: Any) -> str:
    """Java's toString of the parsed value, as ES previews it ({k=v, ...}, [a, b], true)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_preview(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_preview(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)
