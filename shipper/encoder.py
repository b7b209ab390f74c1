"""build_encoder: one container's line -> (index, pipeline, document bytes), from its validated options.

Built once per container by the shipper, and once at StartLogging by the supervisor only to refuse a bad
``index``, ``pipeline`` or ``fields`` option with an error that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shipper.documents import DocumentBuilder, container_meta
from shipper.index_names import IndexTemplate, check_literal_index
from shipper.index_setup import check_pattern, index_setup

# (time_nano, source, message, truncated) -> (index, pipeline or None, document bytes)
Encoder = Callable[[int, str, bytes, bool], tuple[str, str | None, bytes]]


def build_encoder(info: Mapping[str, Any], options: Mapping[str, Any], host_name: str, agent_id: str,
                  agent_version: str, agent_ephemeral_id: str = "") -> Encoder:
    meta = container_meta(info, options, host_name, agent_id, agent_version, agent_ephemeral_id)
    builder = DocumentBuilder(meta, IndexTemplate(str(options["index"])))
    pipeline_option = options.get("pipeline")
    if not pipeline_option:
        def encode(time_nano: int, source: str, message: bytes, truncated: bool) -> tuple[str, str | None, bytes]:
            index, body = builder.encode_with_index(time_nano, source, message, truncated)
            return index, None, body

        return encode
    template = IndexTemplate(str(pipeline_option), option="pipeline")
    template.validate(meta)
    static = None if template.has_date else template.render(meta, 0)

    def encode_with_pipeline(time_nano: int, source: str, message: bytes,
                             truncated: bool) -> tuple[str, str | None, bytes]:
        index, body = builder.encode_with_index(time_nano, source, message, truncated)
        return index, static or template.render(meta, time_nano), body

    return encode_with_pipeline


def validate_documents(info: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Raise LogOptionError (naming the option) for anything that would stop documents from being built."""
    build_encoder(info, options, "validation", "validation", "0")
    index = IndexTemplate(str(options["index"])).validate(container_meta(info, options, "validation", "validation",
                                                                         "0"))
    check_pattern(index_setup(options), index)
    if options.get("dead_letter_index") is not None:
        check_literal_index("dead_letter_index", str(options["dead_letter_index"]))
