"""Index and pipeline names: Beats format strings (``%{+yyyy.MM.dd}``, ``%{[container.name]}``) evaluated per
document, and Elasticsearch's rules for a name used as written (``dead_letter_index``)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proto.options import LogOptionError

_NS_PER_S = 1_000_000_000


class HasStaticFields(Protocol):
    """A container's document metadata (``shipper.documents.ContainerMeta``)."""

    def static_fields(self) -> dict[str, Any]: ...


def is_valid_index_name(name: str) -> bool:
    """Elasticsearch's rules for an index name: lower case, none of \\/*?"<>| ,#:, no leading -_+, not . or ..,
    at most 255 bytes."""
    return (bool(name) and not set(name) & _INVALID_INDEX_CHARS and name[0] not in "-_+" and name not in {".", ".."}
            and name == name.lower() and len(name.encode()) <= 255)


def check_literal_index(option: str, name: str) -> None:
    """Raise LogOptionError for an index option that is used as written (no format string), e.g. dead_letter_index:
    Elasticsearch would refuse every document sent there."""
    if not is_valid_index_name(name):
        raise LogOptionError(f"log-opt {option!r}: {name[:200]!r} is not a valid index name "
                             "(lower case, no \\/*?\"<>| ,#:, not starting with -, _ or +)")


class IndexTemplateError(LogOptionError):
    """A bad ``index``/``pipeline`` format string, or a field it names that the container does not have."""


_DATE_TOKENS = re.compile(r"yyyy|yy|MM|dd|HH|[^A-Za-z%]+|%")
_STRFTIME = {"yyyy": "%Y", "yy": "%y", "MM": "%m", "dd": "%d", "HH": "%H", "%": "%%"}
_INVALID_INDEX_CHARS = frozenset('\\/*?"<>| ,#:')


@dataclass(frozen=True)
class _FieldRef:
    path: tuple[str, ...]
    default: str | None


@dataclass(frozen=True)
class _DateRef:
    strftime: str


class IndexTemplate:
    """A Beats format string, parsed once: literal text, ``%{+yyyy.MM.dd}`` and ``%{[field.path]}``.

    * ``%{+FORMAT}``: the event's ``@timestamp`` in UTC; FORMAT takes ``yyyy yy MM dd HH`` and non-letters.
    * ``%{[a.b]}`` / ``%{[a.b]:default}``: a field of the container's documents (``container.name``,
      ``agent.version``, a custom field...). Per-line fields (message, stream, @timestamp) are not available:
      an index per line value would explode the number of indices.

    Syntax errors raise :class:`IndexTemplateError` in the constructor; :meth:`validate` checks the fields
    against a container at StartLogging; :meth:`render` raises :class:`IndexTemplateError` for a missing field
    (only possible when validate was skipped). Rendered names are lower-cased (ES index names must be).
    """

    def __init__(self, pattern: str, option: str = "index") -> None:
        self.pattern = pattern
        self.option = option
        self._parts = self._parse(pattern)
        self.fields = tuple(p.path for p in self._parts if isinstance(p, _FieldRef))
        self.has_date = any(isinstance(p, _DateRef) for p in self._parts)

    def __repr__(self) -> str:
        return f"IndexTemplate({self.pattern!r})"

    @property
    def is_data_stream(self) -> bool:
        """Whether the target is a data stream by ES 8's built-in ``logs-*-*`` template (``create`` only)."""
        return fnmatch.fnmatchcase(self.pattern.lower(), "logs-*-*")

    def _error(self, text: str) -> IndexTemplateError:
        return IndexTemplateError(f"log-opt {self.option!r}: {text} in {self.pattern!r}")

    def _parse(self, pattern: str) -> list[str | _FieldRef | _DateRef]:
        parts: list[str | _FieldRef | _DateRef] = []
        pos = 0
        while (start := pattern.find("%{", pos)) >= 0:
            end = pattern.find("}", start)
            if end < 0:
                raise self._error(f"'%{{' at position {start} is not closed by '}}'")
            if start > pos:
                parts.append(pattern[pos:start])
            parts.append(self._parse_ref(pattern[start + 2:end], start))
            pos = end + 1
        if pos < len(pattern):
            parts.append(pattern[pos:])
        if not parts:
            raise self._error("empty format")
        return parts

    def _parse_ref(self, body: str, at: int) -> _FieldRef | _DateRef:
        if body.startswith("+"):
            tokens = _DATE_TOKENS.findall(body[1:])
            if not body[1:] or "".join(tokens) != body[1:]:
                raise self._error(f"date format %{{{body}}} at position {at} is not supported "
                                  "(use yyyy, yy, MM, dd, HH and separators)")
            return _DateRef("".join(_STRFTIME.get(t, t) for t in tokens))
        if body.startswith("["):
            close = body.find("]")
            path, rest = body[1:close], body[close + 1:]
            if close < 0 or not path or not all(path.split(".")) or (rest and not rest.startswith(":")):
                raise self._error(f"field reference %{{{body}}} at position {at} is malformed (use %{{[a.b]}})")
            return _FieldRef(tuple(path.split(".")), rest[1:] if rest else None)
        raise self._error(f"%{{{body}}} at position {at} is neither %{{+date}} nor %{{[field]}}")

    def validate(self, meta: HasStaticFields) -> str:
        """Render for ``meta`` now; raise :class:`IndexTemplateError` naming a missing field or a bad result."""
        name = self.render(meta, 0)
        if self.option == "index" and not is_valid_index_name(name):
            raise self._error(f"renders {name!r}, which is not a valid index name")
        return name

    def render(self, source: HasStaticFields | Mapping[str, Any], time_nano: int) -> str:
        """The name for a document of ``source`` (its meta or the document itself) at ``time_nano``."""
        fields = source if isinstance(source, Mapping) else source.static_fields()
        when: dt.datetime | None = None
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, _DateRef):
                when = when or dt.datetime.fromtimestamp(time_nano // _NS_PER_S, dt.UTC)
                out.append(when.strftime(part.strftime))
            else:
                out.append(self._lookup(fields, part))
        return "".join(out).lower()

    def _lookup(self, fields: Mapping[str, Any], ref: _FieldRef) -> str:
        node: Any = fields
        for key in ref.path:
            if not isinstance(node, Mapping) or key not in node:
                node = None
                break
            node = node[key]
        if node is None or isinstance(node, Mapping | list):
            if ref.default is not None:
                return ref.default
            what = "is missing" if node is None else "is not a single value"
            raise self._error(f"field [{'.'.join(ref.path)}] {what} (add a default: %{{[field]:value}})")
        return str(node)
