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
from shipper.documents import MULTILINE_FLAG, TRUNCATED_FLAG, DocumentBuilder, container_meta
from shipper.index_names import IndexTemplate, check_literal_index
from shipper.multiline import Event, Line, MultilineConfig
from shipper.processing import LineDecoder, LineFilter, Processor

# (time_nano, source, message, truncated) -> (index, pipeline or None, document bytes)
Encoder = Callable[[int, str, bytes, bool], tuple[str, str | None, bytes]]


def build_encoder(info: Mapping[str, Any], options: Mapping[str, Any], host_name: str, agent_id: str,
                  agent_version: str) -> Encoder:
    builder = _builder(info, options, host_name, agent_id, agent_version)
    pipeline_option = options.get("pipeline")
    if not pipeline_option:
        def encode(time_nano: int, source: str, message: bytes, truncated: bool) -> tuple[str, str | None, bytes]:
            index, body = builder.encode_with_index(time_nano, source, message, truncated)
            return index, None, body

        return encode
    pipeline = _pipeline(builder, str(pipeline_option))

    def encode_with_pipeline(time_nano: int, source: str, message: bytes,
                             truncated: bool) -> tuple[str, str | None, bytes]:
        index, body = builder.encode_with_index(time_nano, source, message, truncated)
        return index, pipeline(time_nano), body

    return encode_with_pipeline


def build_processor(info: Mapping[str, Any], options: Mapping[str, Any], host_name: str, agent_id: str,
                    agent_version: str, problems: json_lines.JsonProblems | None = None) -> Processor | None:
    """The container's JSON / multiline / filter processing, or None when it has none of those options (then
    :func:`build_encoder`'s plain path makes every document). Raises ValueError naming a bad option."""
    json_config = json_lines.JsonConfig.from_options(options)
    multiline = MultilineConfig.from_options(options)
    line_filter = LineFilter.from_options(options)
    if json_config is None and multiline is None and line_filter is None:
        return None
    builder = _builder(info, options, host_name, agent_id, agent_version)
    pipeline_option = options.get("pipeline")
    pipeline = _pipeline(builder, str(pipeline_option)) if pipeline_option else None
    if json_config is None:
        def encode_event(event: Event) -> tuple[str, str | None, bytes]:
            index, body = builder.encode_with_index(event.time_nano, event.source, event.text, event.truncated,
                                                    event.multiline)
            return index, pipeline(event.time_nano) if pipeline else None, body

        return Processor(multiline, line_filter, encode_event)
    config = json_config

    documents = _FreshDocuments(builder)

    def encode_json_event(event: Event) -> tuple[str, str | None, bytes]:
        document = documents.fresh(event.time_nano, event.source, event.truncated, event.multiline)
        noted: list[str] = []
        document = json_lines.apply_json(document, event.text.decode("utf-8", "replace"), event.fields, event.error,
                                         config, noted)
        if noted and problems is not None:
            problems.note_problems(noted)
        index = builder.index_name(event.time_nano)
        return index, pipeline(event.time_nano) if pipeline else None, json_lines.dumps(document)

    def decode(line: Line) -> Line:
        decoded = json_lines.decode_line(line.text, config)
        if problems is not None:
            problems.note_line(decoded)
        line.text, line.fields, line.error, line.alone = decoded.text, decoded.fields, decoded.error, \
            decoded.own_event
        return line

    decoder: LineDecoder = decode
    return Processor(multiline, line_filter, encode_json_event, decoder, json_lines.join_fields)


class _FreshDocuments:
    """``DocumentBuilder.document`` without ``message``, made by decoding the container's constant part serialised
    once per index: a fresh dict each time (apply_json may change any part of it) at a fifth of a deep copy's cost."""

    def __init__(self, builder: DocumentBuilder) -> None:
        self.builder = builder
        self.templates: dict[str, bytes] = {}

    def fresh(self, time_nano: int, source: str, truncated: bool, multiline: bool) -> dict[str, Any]:
        builder = self.builder
        index = builder.index_name(time_nano)
        template = self.templates.get(index)
        if template is None:
            if len(self.templates) > 64:  # dated indices: one entry per name
                self.templates.clear()
            document = builder.document(time_nano, source, b"")
            for key in ("@timestamp", "message", "stream"):
                del document[key]
            template = self.templates[index] = orjson.dumps(document)
        fields: dict[str, Any] = {"@timestamp": builder.timestamp(time_nano), "stream": source}
        if truncated or multiline:
            fields["log"] = {"flags": [TRUNCATED_FLAG] * truncated + [MULTILINE_FLAG] * multiline}
        fields.update(orjson.loads(template))
        return fields


def _builder(info: Mapping[str, Any], options: Mapping[str, Any], host_name: str, agent_id: str,
             agent_version: str) -> DocumentBuilder:
    meta = container_meta(info, options, host_name, agent_id, agent_version)
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
    """Raise LogOptionError (naming the option) for anything that would stop documents from being built."""
    build_encoder(info, options, "validation", "validation", "0")
    try:
        build_processor(info, options, "validation", "validation", "0")
    except re2.error as exc:  # supervisor.logopts checks each regex first: this is a backstop
        raise LogOptionError(f"a processing option has a regex RE2 refuses: {exc}") from None
    if options.get("dead_letter_index") is not None:
        check_literal_index("dead_letter_index", str(options["dead_letter_index"]))
