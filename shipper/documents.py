"""ECS documents for container log lines, laid out like Elastic's ``elastic-logging-plugin`` writes them.

Per container, :func:`container_meta` turns dockerd's ``Info`` and the validated log options into a frozen
:class:`ContainerMeta` once; a :class:`DocumentBuilder` then serialises the constant part of every document
once and, per line, only formats the timestamp, the message and the stream (this runs for every log line).

Document layout (``container.*``, ``host.name``, ``agent.*``, ``ecs.version`` as in Elastic's plugin)::

    @timestamp, message, stream, log.flags (["truncated"] for cut lines, "multiline" for joined ones),
    container.{id, name, image.{name, tag, hash.all}, labels, env}, host.name,
    agent.{type, name, version, id, ephemeral_id}, ecs.version, data_stream.{type, dataset, namespace} (data
    streams only),
    tags, <custom fields>

Index and pipeline names (``IndexTemplate``) are in ``shipper/index_names.py``.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from proto.options import LogOptionError, user_regex
from shipper.index_names import IndexTemplate

# Elastic's plugin names itself so (x-pack/dockerlogbeat/pipelinemanager/libbeattools.go: getBeatInfo, beatName),
# and libbeat's WithAgentMeta writes it as agent.type: dashboards and saved searches filter on it.
AGENT_TYPE = "elastic-log-driver"
# What libbeat 8.x's processing pipeline (WithECS) stamps on every event of Elastic's plugin.
ECS_VERSION = "8.0.0"
TRUNCATED_FLAG = "truncated"
MULTILINE_FLAG = "multiline"  # an event of several lines; after "truncated", in Filebeat's order
_FLAGS = {(True, False): b',"log":{"flags":["truncated"]}', (False, True): b',"log":{"flags":["multiline"]}',
          (True, True): b',"log":{"flags":["truncated","multiline"]}'}

# Top-level names this module writes; a custom field (``fields`` option) may not take one of them, or it would
# silently replace or merge into the plugin's own data. Names starting with "_" are ES metadata fields.
RESERVED_FIELDS = frozenset({
    "@timestamp", "message", "stream", "log", "container", "host", "agent", "ecs", "data_stream", "tags",
})
_NS_PER_S = 1_000_000_000
_NS_PER_HOUR = 3600 * _NS_PER_S
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# ---------------------------------------------------------------------------------------------------- meta


@dataclass(frozen=True)
class ImageRef:
    """A Docker image reference split the way ECS wants it: ``container.image.{name, tag, hash.all}``."""

    name: str
    tag: str | None
    digest: str | None


def parse_image(reference: str) -> ImageRef:
    """``registry:5000/team/app:2@sha256:...`` -> name, tag, digest; no tag and no digest means ``latest``.

    A ":" is a tag separator only after the last "/", so a registry port is never taken for a tag.
    The name is kept as given (``nginx`` stays ``nginx``, not ``docker.io/library/nginx``).
    """
    rest, _, digest = reference.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        name, tag = rest[:colon], rest[colon + 1:]
    else:
        name, tag = rest, ""
    if not tag and not digest:
        tag = "latest"
    return ImageRef(name, tag or None, digest or None)


@dataclass(frozen=True)
class ContainerMeta:
    """What every document of one container shares. Built once per container by :func:`container_meta`."""

    container_id: str
    container_name: str
    image: ImageRef
    labels: tuple[tuple[str, str], ...]  # every label, or those selected by labels/labels-regex; keys de-dotted
    env: tuple[tuple[str, str], ...] = field(repr=False)  # selected environment variables: may hold secrets
    host_name: str
    agent_name: str
    agent_id: str
    agent_version: str
    tags: tuple[str, ...]
    custom: tuple[tuple[str, str], ...]  # the ``fields`` option, keys as given (dotted = nested)
    agent_ephemeral_id: str = ""  # new at each start of the shipper (libbeat: at each start of a pipeline)

    def static_fields(self) -> dict[str, Any]:
        """The constant part of each document, as a fresh nested dict (never shared: callers may change it)."""
        image: dict[str, Any] = {"name": self.image.name}
        if self.image.tag is not None:
            image["tag"] = self.image.tag
        if self.image.digest is not None:
            image["hash"] = {"all": [self.image.digest]}
        container: dict[str, Any] = {"id": self.container_id, "name": self.container_name, "image": image}
        if self.labels:
            container["labels"] = dict(self.labels)
        if self.env:
            container["env"] = dict(self.env)
        fields: dict[str, Any] = {
            "container": container,
            "host": {"name": self.host_name},
            "agent": {"type": AGENT_TYPE, "name": self.agent_name, "version": self.agent_version,
                      "id": self.agent_id},
            "ecs": {"version": ECS_VERSION},
        }
        if self.agent_ephemeral_id:
            fields["agent"]["ephemeral_id"] = self.agent_ephemeral_id
        if self.tags:
            fields["tags"] = list(self.tags)
        for key, value in self.custom:
            _set_path(fields, key.split("."), value)
        return fields


def container_meta(info: Mapping[str, Any], options: Mapping[str, Any], host_name: str, agent_id: str,
                   agent_version: str, agent_ephemeral_id: str = "") -> ContainerMeta:
    """Build a container's :class:`ContainerMeta` from dockerd's ``Info`` and ``LogOptions.values``.

    Labels: every one, as Elastic's plugin writes them (``clientLogReader.go: publishLoop``,
    ``DeDotLabels(ContainerLabels, true)``), unless ``labels``/``labels-regex`` are given: then only those, as
    Docker's own drivers select them (``Info.ExtraAttributes``). Environment variables only when asked for
    (``env``/``env-regex``): the environment often holds secrets. Keys listed plus keys matching the regex
    (unanchored).
    Raises ``LogOptionError`` for a custom field that collides with the plugin's fields or with another one.
    """
    all_labels = info.get("ContainerLabels") or {}
    if not isinstance(all_labels, Mapping):  # dockerd sends an object or null; anything else holds no labels
        all_labels = {}
    label_keys, label_regex = options.get("labels") or (), options.get("labels-regex")
    if label_keys or label_regex:
        labels = _select(all_labels, label_keys, label_regex)
    else:
        labels = _select(all_labels, tuple(all_labels), None)
    env_map = _env_map(info.get("ContainerEnv"))
    env = _select(env_map, options.get("env") or (), options.get("env-regex"))
    custom = tuple(options.get("fields") or ())
    _check_custom(custom)
    return ContainerMeta(
        container_id=str(info.get("ContainerID") or ""),
        container_name=str(info.get("ContainerName") or "").lstrip("/"),
        image=parse_image(str(info.get("ContainerImageName") or "")),
        labels=labels,
        env=env,
        host_name=host_name,
        agent_name=options.get("name") or host_name,
        agent_id=agent_id,
        agent_version=agent_version,
        # The rendered `tag` log-opt (the supervisor renders Docker's template at StartLogging) after the `tags` ones.
        tags=tuple(options.get("tags") or ()) + ((options["tag"],) if options.get("tag") else ()),
        custom=custom,
        agent_ephemeral_id=agent_ephemeral_id,
    )


# The parts of dockerd's Info the plugin reads back (documents, index/pipeline templates, stats, re-attach). The
# rest (ContainerArgs, ContainerEntrypoint, the environment not asked for) is not kept in memory or on disk: it
# often holds other people's secrets.
_KEPT_INFO = ("ContainerID", "ContainerName", "ContainerImageID", "ContainerImageName", "ContainerCreated",
              "ContainerLabels", "DaemonName", "LogPath", "Config")


def kept_info(info: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """dockerd's ``Info`` reduced to what the plugin uses: ``ContainerEnv`` keeps only the variables that
    ``env``/``env-regex`` put in the documents. Idempotent, so a re-attached logger's saved Info passes again."""
    kept = {key: info[key] for key in _KEPT_INFO if key in info}
    if "ContainerEnv" in info:
        env_map = _env_map(info["ContainerEnv"])
        selected = {key for key, _ in _select(env_map, options.get("env") or (), options.get("env-regex"),
                                              dedot=False)}
        kept["ContainerEnv"] = [f"{key}={value}" for key, value in env_map.items() if key in selected]
    return kept


def _env_map(entries: Any) -> dict[str, str]:
    env_map: dict[str, str] = {}
    if not isinstance(entries, list | tuple):  # dockerd sends a list or null; anything else holds nothing we use
        return env_map
    for entry in entries:
        if not isinstance(entry, str):
            continue
        key, sep, value = entry.partition("=")
        if sep:  # Docker ignores entries without "="
            env_map[key] = value
    return env_map


def _select(source: Mapping[str, str], keys: tuple[str, ...], regex: str | None,
            dedot: bool = True) -> tuple[tuple[str, str], ...]:
    chosen: dict[str, str] = {}
    for key in keys:
        if key in source:
            chosen[key] = source[key]
    if regex:
        pattern = user_regex(regex)  # RE2: linear time (this runs on the supervisor's loop at StartLogging)
        for key, value in source.items():
            if pattern.search(key):  # Go's MatchString: a match anywhere in the key
                chosen[key] = value
    # ECS (and Elastic's plugin, DeDotLabels) replaces dots: "com.docker.x" would otherwise become an object path.
    if not dedot:
        return tuple((key, str(value)) for key, value in chosen.items())
    return tuple((key.replace(".", "_"), str(value)) for key, value in chosen.items())


def _check_custom(custom: tuple[tuple[str, str], ...]) -> None:
    probe: dict[str, Any] = {}
    for key, value in custom:
        parts = key.split(".")
        if not all(parts):
            raise LogOptionError(f"log-opt 'fields': field name {key!r} has an empty part")
        if parts[0] in RESERVED_FIELDS or parts[0].startswith("_"):
            raise LogOptionError(f"log-opt 'fields': field name {key!r} collides with a field the plugin writes "
                                 f"({parts[0]!r}); choose another name")
        try:
            _set_path(probe, parts, value)
        except ValueError:
            raise LogOptionError(f"log-opt 'fields': field {key!r} collides with another custom field") from None


def _set_path(target: dict[str, Any], parts: list[str], value: str) -> None:
    for part in parts[:-1]:
        node = target.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(part)
        target = node
    if parts[-1] in target:
        raise ValueError(parts[-1])
    target[parts[-1]] = value


# ---------------------------------------------------------------------------------------------------- documents


def data_stream_fields(name: str) -> dict[str, str]:
    """``logs-<dataset>-<namespace>`` -> ``data_stream.*`` (the namespace is after the last "-")."""
    ds_type, _, rest = name.partition("-")
    dataset, _, namespace = rest.rpartition("-")
    return {"type": ds_type, "dataset": dataset, "namespace": namespace}


class DocumentBuilder:
    """Documents of one container. :meth:`encode` is the per-line fast path; :meth:`document` the readable one.

    ``message``: the line as UTF-8 (invalid bytes replaced by U+FFFD), without its trailing "\\n", leading
    whitespace kept. ``truncated``: the shipper cut the line at its size cap; adds ``log.flags: ["truncated"]``.
    ``multiline``: the message joins several lines; adds ``"multiline"`` to ``log.flags``.
    """

    def __init__(self, meta: ContainerMeta, index_template: IndexTemplate) -> None:
        self.meta = meta
        self.index_template = index_template
        self._index = index_template.validate(meta)  # also the name for every line when there is no date part
        self._indices: dict[int, str] = {}  # UTC hour (the finest date unit) -> name
        self._static = meta.static_fields()
        self._tails: dict[str, bytes] = {}  # index name -> serialised constant fields (they differ by data_stream)
        self._streams: dict[str, bytes] = {}
        self._dated = index_template.has_date
        self._ends: dict[str, bytes] = {}  # without a date in the index: stream -> its field and the constant tail
        # Caches start empty, not at -1: that is a valid second (1969-12-31T23:59:59) and day.
        self._second: int | None = None
        self._day: int | None = None
        self._date = b""
        self._prefix = b""
        self._head = b""  # '{"@timestamp":"' and _prefix

    # ------------------------------------------------------------------ shared parts

    def index_name(self, time_nano: int) -> str:
        if not self.index_template.has_date:
            return self._index
        hour = time_nano // _NS_PER_HOUR
        name = self._indices.get(hour)
        if name is None:
            if len(self._indices) > 64:  # a backlog spanning days: keep the memo small
                self._indices.clear()
            name = self._indices[hour] = self.index_template.render(self._static, time_nano)
        return name

    def _constant(self, index: str) -> dict[str, Any]:
        if not self.index_template.is_data_stream:
            return self._static
        return {**self._static, "data_stream": data_stream_fields(index)}

    def _tail(self, index: str) -> bytes:
        tail = self._tails.get(index)
        if tail is None:
            if len(self._tails) > 64:  # dated data streams: one entry per name
                self._tails.clear()
            # '{"container":...}' -> ',"container":...}': spliced after the per-line fields.
            tail = self._tails[index] = b"," + orjson.dumps(self._constant(index))[1:]
        return tail

    def timestamp(self, time_nano: int) -> str:
        return self._timestamp(time_nano).decode()

    def _timestamp(self, time_nano: int) -> bytes:
        second, nanos = divmod(time_nano, _NS_PER_S)  # floor division: right for times before 1970 too
        if second != self._second:
            # Formatting a datetime costs more than the rest of a document: the date once per day, the
            # time of day once per second, by arithmetic.
            day, in_day = divmod(second, 86_400)
            if day != self._day:
                date = _EPOCH + dt.timedelta(days=day)
                self._date = b"%04d-%02d-%02dT" % (date.year, date.month, date.day)
                self._day = day
            hours, in_hour = divmod(in_day, 3600)
            self._prefix = self._date + b"%02d:%02d:%02d." % (hours, in_hour // 60, in_hour % 60)
            self._head = b'{"@timestamp":"' + self._prefix
            self._second = second
        return self._prefix + b"%09dZ" % nanos

    # ------------------------------------------------------------------ documents

    def document(self, time_nano: int, source: str, message: bytes, truncated: bool = False,
                 multiline: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "@timestamp": self.timestamp(time_nano),
            "message": _text(message),
            "stream": source,
        }
        if truncated or multiline:
            doc["log"] = {"flags": [TRUNCATED_FLAG] * truncated + [MULTILINE_FLAG] * multiline}
        # A deep copy: the caller may change the document, the builder's constant part must stay as it is.
        doc.update(copy.deepcopy(self._constant(self.index_name(time_nano))))
        return doc

    def encode(self, time_nano: int, source: str, message: bytes, truncated: bool = False) -> bytes:
        """``orjson.dumps(self.document(...))`` in meaning, built from pre-serialised parts."""
        return self.encode_with_index(time_nano, source, message, truncated)[1]

    def encode_line(self, time_nano: int, source: str, message: bytes, truncated: bool) -> tuple[str, bytes]:
        """:meth:`encode_with_index` for the plain path, which runs per line: ``message`` is already without its
        "\n" (the feed strips it once), there is no multiline flag, and the parts are joined in one go: the
        timestamp's head is cached per second, and without a date in the index the stream and the constant tail
        are one cached piece per stream (each part less was measurable per line, issue 15)."""
        second, nanos = divmod(time_nano, _NS_PER_S)
        if second != self._second:
            self._timestamp(time_nano)  # renews the cached date and time of day
        if not self._dated and not truncated:
            end = self._ends.get(source)
            if end is None:
                end = self._ends[source] = self._stream(source) + self._tail(self._index)
            return self._index, b"".join((self._head, b'%09dZ","message":' % nanos,
                                          orjson.dumps(message.decode("utf-8", "replace")), end))
        index = self.index_name(time_nano)
        tail = self._tails.get(index) or self._tail(index)
        return index, b"".join((self._head, b'%09dZ","message":' % nanos,
                                orjson.dumps(message.decode("utf-8", "replace")), self._stream(source),
                                _FLAGS[True, False] if truncated else b"", tail))

    def _stream(self, source: str) -> bytes:
        stream = self._streams.get(source)
        if stream is None:
            if len(self._streams) > 64:  # bad input naming many sources: keep the memo small
                self._streams.clear()
                self._ends.clear()
            stream = self._streams[source] = b',"stream":' + orjson.dumps(source)
        return stream

    def encode_with_index(self, time_nano: int, source: str, message: bytes,
                          truncated: bool = False, multiline: bool = False) -> tuple[str, bytes]:
        """The target index (or data stream) and the encoded document."""
        index = self.index_name(time_nano)
        stream = self._stream(source)
        if message.endswith(b"\n"):
            message = message[:-1]
        body = (b'{"@timestamp":"' + self._timestamp(time_nano) + b'","message":'
                + orjson.dumps(message.decode("utf-8", "replace")) + stream
                + (_FLAGS[truncated, multiline] if truncated or multiline else b"") + self._tail(index))
        return index, body


def _text(message: bytes) -> str:
    if message.endswith(b"\n"):
        message = message[:-1]
    return message.decode("utf-8", "replace")
