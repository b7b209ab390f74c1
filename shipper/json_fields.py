"""Writing a decoded JSON object into a document, as libbeat's ``common/jsontransform`` does it (``WriteJSONKeys``,
``expandFields``, mapstr's ``DeepUpdate``) and its ``parseTimestamp``; :func:`shipper.json_lines.apply_json` uses it.

Objects of the document that keys merge into are copied first, never changed: the document's nested objects may
be shared with a builder's constant fields.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson

_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")
_ISO8601 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})(Z|[+-]\d{4})")  # Go "...05.000Z0700"


def json_kind(value: Any) -> str:
    """What a JSON value is, for error texts."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def note(problems: list[str] | None, name: str) -> None:
    """Tell the caller (who logs each kind once) that something did not apply."""
    if problems is not None:
        problems.append(name)


def write_keys(document: dict[str, Any], fields: dict[str, Any], overwrite: bool, errors: list[str],
               problems: list[str] | None) -> None:
    """libbeat's WriteJSONKeys: without overwrite the plugin's fields win (a deep merge that keeps what is there);
    with it the JSON's keys replace them, ``@timestamp`` only by an RFC 3339 / ISO 8601 string."""
    metadata_free = fields
    metadata_free.pop("@metadata", None)  # Filebeat's event metadata: never indexed
    if not overwrite:
        metadata_free.pop("@timestamp", None)
        deep_update(document, metadata_free, overwrite=False)
        return
    if "@timestamp" in metadata_free:
        value = metadata_free.pop("@timestamp")
        timestamp = parse_timestamp(value) if isinstance(value, str) else None
        if timestamp is not None:
            document["@timestamp"] = timestamp
        else:
            note(problems, "@timestamp not overwritten")
            errors.append("@timestamp not overwritten (not string)" if not isinstance(value, str)
                          else f"@timestamp not overwritten (parse error on {value[:64]})")
    if "type" in metadata_free:
        value = metadata_free.pop("type")
        if isinstance(value, str) and value and not value.startswith("_"):
            document["type"] = value
        else:
            note(problems, "type not overwritten")
            errors.append("type not overwritten (not string)" if not isinstance(value, str)
                          else f"type not overwritten (invalid value [{value[:64]}])")
    deep_update(document, metadata_free, overwrite=True)


def deep_update(target: dict[str, Any], source: dict[str, Any], overwrite: bool) -> None:
    """mapstr's DeepUpdate / DeepUpdateNoOverwrite: objects merge key by key; any other clash keeps the target's
    value, or takes the source's with ``overwrite``. The target's objects merged into are copied, not changed."""
    for key, value in source.items():
        if key not in target:
            target[key] = value
            continue
        old = target[key]
        if isinstance(old, dict) and isinstance(value, dict):
            target[key] = merged = dict(old)
            deep_update(merged, value, overwrite)
        elif overwrite:
            target[key] = value


def parse_timestamp(value: str) -> str | None:
    """Go's time.Parse with RFC3339, then "2006-01-02T15:04:05.000Z0700" (libbeat's parseTimestamp), as the
    plugin writes timestamps: UTC, nanoseconds."""
    match = _RFC3339.fullmatch(value) or _ISO8601.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    if zone == "Z":  # the usual case, without time zone arithmetic (a third of the cost)
        try:
            dt.datetime(year, month, day, hour, minute, second)
        except ValueError:
            return None
        return f"{value[:19]}.{fraction.ljust(9, '0')}Z"
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


class ExpandConflict(ValueError):
    pass


def expanded(obj: dict[str, Any]) -> dict[str, Any]:
    """libbeat's expandFields (``{"a.b": 1}`` -> ``{"a": {"b": 1}}``, objects merged), without changing ``obj``.
    Raises ExpandConflict with Filebeat's wording when a path runs into a value that is not an object."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            try:
                value = expanded(value)
            except ExpandConflict as exc:
                raise ExpandConflict(f"error expanding {_go_quote(key)}: {exc}") from None
        if "." in key or key in out:
            _put(out, key, value)
        else:
            out[key] = value
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = out
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ExpandConflict(f"cannot expand {_go_quote(key)}: found conflicting key")
        node = child
    last = parts[-1]
    if last not in node:
        node[last] = value
        return
    old = node[last]
    if not isinstance(value, dict):
        raise ExpandConflict(f"cannot expand {_go_quote(key)}: found existing ({json_kind(old)}) value")
    if not isinstance(old, dict):
        raise ExpandConflict(f"cannot expand {_go_quote(key)}: found conflicting key")
    value = dict(value)  # it may be the caller's, shown whole if the expansion fails
    _merge(value, old, key)
    node[last] = value


def _merge(into: dict[str, Any], other: dict[str, Any], key: str) -> None:
    for name, value in other.items():
        if name not in into:
            into[name] = value
        elif isinstance(into[name], dict) and isinstance(value, dict):
            _merge(into[name], value, key)
        else:
            raise ExpandConflict(f"cannot expand {_go_quote(key)}: cannot merge {_go_quote(name)}")


def _go_quote(text: str) -> str:
    return orjson.dumps(text).decode()
