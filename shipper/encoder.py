"""build_encoder: one container's line -> (index, pipeline, document bytes), from its validated options;
build_processor: the same for the events of a container with JSON, multiline or filter options.

Built once per container by the shipper, and once at StartLogging by the supervisor only to refuse a bad
``index``, ``pipeline`` or ``fields`` option with an error that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
import re2

from proto.options import LogOptionError
from shipper import json_lines
from shipper.documents import MULTILINE_FLAG, TRUNCATED_FLAG, DocumentBuilder, container_meta, data_stream_fields
from shipper.index_names import IndexTemplate, check_literal_index
from shipper.index_setup import check_pattern, index_setup
from shipper.multiline import Event, Line, MultilineConfig
from shipper.processing import LineDecoder, LineFilter, Processor

# (time_nano, source, message, truncated) -> (index, pipeline or None, document bytes)
Encoder = Callable[[int, str, bytes, bool], tuple[str, str | None, bytes]]


def build_encoder(info: Mapping[str, Any], options: Mapping[str, Any], host_name: str, agent_id: str,
                  agent_version: str, agent_ephemeral_id: str = "") -> Encoder:
    builder = _builder(info, options, host_name, agent_id, agent_version, agent_ephemeral_id)
    pipeline_option = options.get("pipeline")
    if not pipeline_option:
        return _PlainEncoder(builder.encode_line)
    pipeline = _pipeline(builder, str(pipeline_option))

    def encode_with_pipeline(time_nano: int, source: str, message: bytes,
                             truncated: bool) -> tuple[str, str | None, bytes]:
        index, body = builder.encode_line(time_nano, source, message, truncated)
        return index, pipeline(time_nano), body

    return encode_with_pipeline


class _PlainEncoder:
    """An Encoder without a pipeline. ``line`` is the builder's ``encode_line`` itself: the feed's plain path calls
    it directly (index, body), without this wrapper's call and tuple per line (issue 15)."""

    __slots__ = ("line",)

    def __init__(self, line: Callable[[int, str, bytes, bool], tuple[str, bytes]]) -> None:
        self.line = line

    def __call__(self, time_nano: int, source: str, message: bytes, truncated: bool) -> tuple[str, str | None, bytes]:
        index, body = self.line(time_nano, source, message, truncated)
        return index, None, body


def build_processor(info: Mapping[str, Any], options: Mapping[str, Any], host_name: str, agent_id: str,
                    agent_version: str, problems: json_lines.JsonProblems | None = None,
                    agent_ephemeral_id: str = "", builder: DocumentBuilder | None = None) -> Processor | None:
    """The container's JSON / multiline / filter processing, or None when it has none of those options (then
    :func:`build_encoder`'s plain path makes every document). Raises ValueError naming a bad option.
    ``builder``: the container's, when the caller made it already."""
    json_config = json_lines.JsonConfig.from_options(options)
    multiline = MultilineConfig.from_options(options)
    line_filter = LineFilter.from_options(options)
    if json_config is None and multiline is None and line_filter is None:
        return None
    builder = builder or _builder(info, options, host_name, agent_id, agent_version, agent_ephemeral_id)
    container = str(info.get("ContainerID") or "")[:12]
    pipeline_option = options.get("pipeline")
    pipeline = _pipeline(builder, str(pipeline_option)) if pipeline_option else None
    if json_config is None:
        def encode_event(event: Event) -> tuple[str, str | None, bytes]:
            index, body = builder.encode_with_index(event.time_nano, event.source, event.text, event.truncated,
                                                    event.multiline)
            return index, pipeline(event.time_nano) if pipeline else None, body

        return Processor(multiline, line_filter, encode_event, container=container)
    config = json_config

    documents = _JsonDocuments(builder, config, problems)

    def encode_json_event(event: Event) -> tuple[str, str | None, bytes]:
        index, body = documents.encode(event)
        return index, pipeline(event.time_nano) if pipeline else None, body

    def decode(line: Line) -> Line:
        decoded = json_lines.decode_line(line.text, config)
        if problems is not None:
            problems.note_line(decoded)
        line.text, line.fields, line.error, line.alone = decoded.text, decoded.fields, decoded.error, \
            decoded.own_event
        return line

    decoder: LineDecoder = decode
    return Processor(multiline, line_filter, encode_json_event, decoder, json_lines.join_fields, container)


class _JsonDocuments:
    """Documents of JSON events: ``DocumentBuilder.document`` without ``message``, then ``json_lines.apply_json``.

    The container's constant part (container, host, agent, ...) is serialised once per index. When the event's
    keys cannot meet it (none is one of its top-level names, nor starts with one when dotted keys expand), the
    per-event fields are encoded alone and the constant bytes spliced after them, as the plain path does; otherwise
    it is decoded into a fresh dict (apply_json may merge into any part of it) and the whole document encoded."""

    def __init__(self, builder: DocumentBuilder, config: json_lines.JsonConfig,
                 problems: json_lines.JsonProblems | None) -> None:
        self.builder = builder
        self.config = config
        self.problems = problems
        self.constants: dict[str, tuple[bytes, bytes, frozenset[str]]] = {}  # index -> (serialised, tail, names)

    def encode(self, event: Event) -> tuple[str, bytes]:
        builder = self.builder
        index = builder.index_name(event.time_nano)
        constant, tail, names = self._constant(index)
        document: dict[str, Any] = {"@timestamp": builder.timestamp(event.time_nano), "stream": event.source}
        if event.truncated or event.multiline:
            document["log"] = {"flags": [TRUNCATED_FLAG] * event.truncated + [MULTILINE_FLAG] * event.multiline}
        spliced = not self._meets(event.fields, names)
        if not spliced:
            document.update(orjson.loads(constant))
        noted: list[str] = []
        document = json_lines.apply_json(document, event.text.decode("utf-8", "replace"), event.fields, event.error,
                                         self.config, noted)
        if noted and self.problems is not None:
            self.problems.note_problems(noted)
        body = json_lines.dumps(document)
        return index, body[:-1] + tail if spliced else body

    def _meets(self, fields: dict[str, Any] | None, names: frozenset[str]) -> bool:
        if not names.isdisjoint(("json", "error")):  # custom fields under apply_json's own names: always merge
            return True
        if fields is None or not self.config.keys_under_root:
            return False  # the object goes under "json"
        if not names.isdisjoint(fields):
            return True
        # A dotted key becomes an object path only when expanded ("host.name" stays a key of its own otherwise).
        return self.config.expand_keys and any(key.partition(".")[0] in names for key in fields)

    def _constant(self, index: str) -> tuple[bytes, bytes, frozenset[str]]:
        known = self.constants.get(index)
        if known is None:
            if len(self.constants) > 64:  # dated indices: one entry per name
                self.constants.clear()
            document = self.builder.document(0, "", b"")
            for key in ("@timestamp", "message", "stream"):
                del document[key]
            if self.builder.index_template.is_data_stream:
                document["data_stream"] = data_stream_fields(index)
            serialised = orjson.dumps(document)
            known = self.constants[index] = (serialised, b"," + serialised[1:], frozenset(document))
        return known


def _builder(info: Mapping[str, Any], options: Mapping[str, Any], host_name: str, agent_id: str,
             agent_version: str, agent_ephemeral_id: str = "") -> DocumentBuilder:
    meta = container_meta(info, options, host_name, agent_id, agent_version, agent_ephemeral_id)
    return DocumentBuilder(meta, IndexTemplate(str(options["index"])))


def _pipeline(builder: DocumentBuilder, option: str) -> Callable[[int], str]:
    """The ingest pipeline's name for a line's time (rendered once when it has no date part)."""
    template = IndexTemplate(option, option="pipeline")
    template.validate(builder.meta)
    if not template.has_date:
        static = template.render(builder.meta, 0)
        return lambda _time_nano: static
    return lambda time_nano: template.render(builder.meta, time_nano)


def validate_documents(info: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Raise LogOptionError (naming the option) for anything that would stop documents from being built.

    The container's metadata is built once (it was built three times: a cost on every shipping StartLogging)."""
    builder = _builder(info, options, "validation", "validation", "0")  # index and custom fields checked here
    if options.get("pipeline"):
        _pipeline(builder, str(options["pipeline"]))
    check_pattern(index_setup(options), builder.index_template.validate(builder.meta))
    try:
        build_processor(info, options, "validation", "validation", "0", builder=builder)
    except LogOptionError:
        raise
    except (re2.error, ValueError) as exc:  # supervisor.logopts checks these first: this is a backstop
        raise LogOptionError(f"processing options: {exc}") from None
    if options.get("dead_letter_index") is not None:
        check_literal_index("dead_letter_index", str(options["dead_letter_index"]))
