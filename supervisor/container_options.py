"""A logger's options as StartLogging settles them: its log-opts, its container's hints (``co.elastic.logs/``
labels, supervisor/hints.py) over them, and the ``tag`` template rendered on its Info (supervisor/tag.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from proto.options import LogOptionError
from supervisor.hints import options_with_hints
from supervisor.logopts import LogOptions
from supervisor.tag import TagError, render_tag, uses_command


def container_options(info: Mapping[str, Any]) -> LogOptions:
    """Raises LogOptionError naming the option or label at fault."""
    options = options_with_hints(info)
    template = options["tag"]
    if template is None:
        return options
    try:
        rendered = render_tag(template, info)
    except TagError as exc:
        raise LogOptionError(f"log-opt 'tag': {exc}") from None
    return replace(options, values={**options.values, "tag": rendered})


def tag_inputs(info: Mapping[str, Any]) -> dict[str, Any]:
    """What rendering the tag needs that the kept Info drops (shipper/documents.py: kept_info): the command line,
    only when the tag shows it. Kept in the logger's 0600 record only, so a re-attach renders the same tag."""
    config = info.get("Config")
    template = config.get("tag") if isinstance(config, Mapping) else None
    if not uses_command(template):
        return {}
    return {key: info[key] for key in ("ContainerEntrypoint", "ContainerArgs") if key in info}
