"""Documents as Elastic's plugin writes them: meta, image references, labels/env, timestamps, messages, indices."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto.options import LogOptionError
from shipper.documents import (
    ECS_VERSION,
    ContainerMeta,
    DocumentBuilder,
    ImageRef,
    container_meta,
    kept_info,
    parse_image,
)
from shipper.index_names import IndexTemplate, IndexTemplateError
from supervisor.logopts import parse_log_options

CID = "0123456789abcdef" * 4
INFO: dict[str, Any] = {
    "ContainerID": CID,
    "ContainerName": "/web-1",
    "ContainerImageName": "nginx:1.25",
    "ContainerImageID": "sha256:" + "f" * 64,
    "ContainerLabels": {"app": "web", "com.docker.compose.project": "shop", "com.docker.compose.service": "web",
                        "tier": "front"},
    "ContainerEnv": ["PATH=/usr/bin", "DB_PASSWORD=hunter2", "APP_MODE=prod", "NOVALUE", "EMPTY="],
    "ContainerCreated": "2024-05-01T10:00:00Z",
    "Config": {},
}
T0 = 1_714_558_830_123_456_789  # 2024-05-01T10:20:30.123456789Z


def options(**opts: str) -> dict[str, Any]:
    return dict(parse_log_options({"hosts": "es:9200", **opts}).values)


def meta(info: dict[str, Any] | None = None, **opts: str) -> ContainerMeta:
    return container_meta(INFO if info is None else info, options(**opts), "docker-host", "agent-1", "0.1.0")


def meta_with(opts: dict[str, str]) -> ContainerMeta:
    return meta(None, **opts)


def builder(index: str = "logs-docker-default", **opts: str) -> DocumentBuilder:
    return DocumentBuilder(meta_with(opts), IndexTemplate(index))


# ---------------------------------------------------------------------------- meta and fields


def test_default_document() -> None:
    doc = builder().document(T0, "stdout", b"hello\n")
    assert doc == {
        "@timestamp": "2024-05-01T10:20:30.123456789Z",
        "message": "hello",
        "stream": "stdout",
        "container": {"id": CID, "name": "web-1", "image": {"name": "nginx", "tag": "1.25"},
                      "labels": {"app": "web", "com_docker_compose_project": "shop",
                                 "com_docker_compose_service": "web", "tier": "front"}},
        "host": {"name": "docker-host"},
        "agent": {"type": "elastic-log-driver", "name": "docker-host", "version": "0.1.0", "id": "agent-1"},
        "ecs": {"version": ECS_VERSION},
        "data_stream": {"type": "logs", "dataset": "docker", "namespace": "default"},
    }


@pytest.mark.parametrize(("opts", "path", "expected"), [
    ({"name": "shipper-a"}, ("agent", "name"), "shipper-a"),
    ({"tags": "a, b"}, ("tags",), ["a", "b"]),
    ({"fields": "env=prod,team=core"}, ("env",), "prod"),
    ({"fields": "fields.env=prod"}, ("fields", "env"), "prod"),
    ({"fields": "app.owner=me,app.tier=1"}, ("app",), {"owner": "me", "tier": "1"}),
    ({"labels": "app"}, ("container", "labels"), {"app": "web"}),
])
def test_option_driven_fields(opts: dict[str, str], path: tuple[str, ...], expected: Any) -> None:
    node: Any = builder(**opts).document(T0, "stderr", b"x")
    for key in path:
        node = node[key]
    assert node == expected


@pytest.mark.parametrize("fields", ["container.x=1", "message=m", "@timestamp=t", "tags=t", "data_stream.x=1",
                                    "_id=1", "a=1,a.b=2", "a.b=1,a=2", "a=1,a=2", "a..b=1"])
def test_custom_field_collisions_are_refused(fields: str) -> None:
    with pytest.raises(LogOptionError, match="log-opt 'fields'"):
        meta(fields=fields)


@pytest.mark.parametrize(("opts", "labels"), [
    ({}, {"app": "web", "com_docker_compose_project": "shop", "com_docker_compose_service": "web", "tier": "front"}),
    ({"labels": "app,missing"}, {"app": "web"}),
    ({"labels-regex": "^com\\.docker"}, {"com_docker_compose_project": "shop", "com_docker_compose_service": "web"}),
    ({"labels-regex": "compose"}, {"com_docker_compose_project": "shop", "com_docker_compose_service": "web"}),
    ({"labels": "tier", "labels-regex": "project$"}, {"tier": "front", "com_docker_compose_project": "shop"}),
])
def test_label_selection_and_dedot(opts: dict[str, str], labels: dict[str, str] | None) -> None:
    assert builder(**opts).document(T0, "stdout", b"x")["container"].get("labels") == labels


@pytest.mark.parametrize(("opts", "env"), [
    ({}, None),
    ({"env": "APP_MODE,NOVALUE,EMPTY"}, {"APP_MODE": "prod", "EMPTY": ""}),
    ({"env-regex": "^APP_"}, {"APP_MODE": "prod"}),
])
def test_env_only_when_asked(opts: dict[str, str], env: dict[str, str] | None) -> None:
    m = meta_with(opts)
    assert builder(**opts).document(T0, "stdout", b"x")["container"].get("env") == env
    assert "hunter2" not in repr(m)


def test_null_labels_and_env() -> None:
    m = meta({**INFO, "ContainerLabels": None, "ContainerEnv": None}, labels="app", env="PATH")
    assert m.labels == () and m.env == ()


@pytest.mark.parametrize(("opts", "env"), [
    ({}, []),
    ({"env": "APP_MODE,EMPTY"}, ["APP_MODE=prod", "EMPTY="]),
    ({"env-regex": "^APP_"}, ["APP_MODE=prod"]),
])
def test_kept_info_holds_only_what_the_plugin_reads(opts: dict[str, str], env: list[str]) -> None:
    full = {**INFO, "ContainerArgs": ["--db-password", "hunter2"], "ContainerEntrypoint": "/run.sh"}
    kept = kept_info(full, options(**opts))
    assert "hunter2" not in repr(kept)
    assert kept.get("ContainerEnv") == env
    assert set(kept) - {"ContainerEnv"} == set(INFO) - {"ContainerEnv"}  # names, image, labels, Config...
    assert kept_info(kept, options(**opts)) == kept  # a re-attached logger's saved Info passes again
    # The documents are the same from the kept Info as from the full one.
    assert meta(kept, **opts) == meta(full, **opts)


@pytest.mark.parametrize("env", [None, 5, "A=1", {"A": "1"}, [1, None, "A=1"]])
def test_kept_info_takes_any_environment_dockerd_could_send(env: Any) -> None:
    kept = kept_info({**INFO, "ContainerEnv": env}, options(env="A"))
    assert kept["ContainerEnv"] == (["A=1"] if isinstance(env, list) else [])


@pytest.mark.parametrize(("reference", "expected"), [
    ("nginx", ImageRef("nginx", "latest", None)),
    ("nginx:1.25", ImageRef("nginx", "1.25", None)),
    ("registry:5000/team/app:2", ImageRef("registry:5000/team/app", "2", None)),
    ("registry:5000/app", ImageRef("registry:5000/app", "latest", None)),
    ("localhost:5000/a/b", ImageRef("localhost:5000/a/b", "latest", None)),
    ("app@sha256:" + "ab" * 32, ImageRef("app", None, "sha256:" + "ab" * 32)),
    ("reg:5000/app:1.0@sha256:abc", ImageRef("reg:5000/app", "1.0", "sha256:abc")),
    ("docker.io/library/redis:7-alpine", ImageRef("docker.io/library/redis", "7-alpine", None)),
    ("sha256:" + "c" * 64, ImageRef("sha256", "c" * 64, None)),  # an image id typed as a name: Docker's own split
])
def test_image_reference_parsing(reference: str, expected: ImageRef) -> None:
    assert parse_image(reference) == expected


def test_digest_goes_to_image_hash_all() -> None:
    doc = DocumentBuilder(meta({**INFO, "ContainerImageName": "app@sha256:abc"}),
                          IndexTemplate("logs-docker-default")).document(T0, "stdout", b"x")
    assert doc["container"]["image"] == {"name": "app", "hash": {"all": ["sha256:abc"]}}


# ---------------------------------------------------------------------------- timestamp and message


@pytest.mark.parametrize(("time_nano", "text"), [
    (0, "1970-01-01T00:00:00.000000000Z"),
    (1, "1970-01-01T00:00:00.000000001Z"),
    (-1, "1969-12-31T23:59:59.999999999Z"),
    (T0, "2024-05-01T10:20:30.123456789Z"),
    (1_714_558_830_999_999_999, "2024-05-01T10:20:30.999999999Z"),
    (1_714_558_831_000_000_000, "2024-05-01T10:20:31.000000000Z"),
    (1_709_164_799_999_999_999, "2024-02-28T23:59:59.999999999Z"),
    (1_709_164_800_000_000_000, "2024-02-29T00:00:00.000000000Z"),
    (2**63 - 1, "2262-04-11T23:47:16.854775807Z"),  # LogEntry.time_nano is an int64
    (-(2**63), "1677-09-21T00:12:43.145224192Z"),
])
def test_timestamp_exact(time_nano: int, text: str) -> None:
    fresh = builder()  # nothing cached yet
    assert fresh.timestamp(time_nano) == text
    warm = builder()
    warm.timestamp(time_nano - 1)  # the previous nanosecond cached, maybe in the previous second
    assert warm.timestamp(time_nano) == text
    assert warm.timestamp(time_nano - 1_000_000_000)[:19] != text[:19]


def test_timestamp_cache_follows_going_back_in_time() -> None:
    b = builder()
    stamps = [T0, T0 + 1_000_000_000, T0, T0 - 5_000_000_000]
    assert [b.timestamp(t) for t in stamps] == [
        "2024-05-01T10:20:30.123456789Z", "2024-05-01T10:20:31.123456789Z",
        "2024-05-01T10:20:30.123456789Z", "2024-05-01T10:20:25.123456789Z"]


@pytest.mark.parametrize(("line", "message"), [
    (b"hello\n", "hello"),
    (b"  indented\tline\n", "  indented\tline"),
    (b"no newline", "no newline"),
    (b"two\n\n", "two\n"),
    (b"crlf\r\n", "crlf\r"),
    (b"\n", ""),
    (b"bad \xff\xfe utf8\n", "bad \ufffd\ufffd utf8"),
    (b"cut \xe2\x82", "cut \ufffd"),
    ("caf\u00e9 \u2603".encode() + b"\n", "caf\u00e9 \u2603"),
    (b'quote " backslash \\ nul \x00', 'quote " backslash \\ nul \x00'),
])
def test_message_decoding(line: bytes, message: str) -> None:
    b = builder()
    assert b.document(T0, "stdout", line)["message"] == message
    assert orjson.loads(b.encode(T0, "stdout", line))["message"] == message


def test_truncated_flag() -> None:
    b = builder()
    assert b.document(T0, "stdout", b"x" * 10, truncated=True)["log"] == {"flags": ["truncated"]}
    assert "log" not in b.document(T0, "stdout", b"x")
    assert orjson.loads(b.encode(T0, "stdout", b"x", truncated=True))["log"] == {"flags": ["truncated"]}


# ---------------------------------------------------------------------------- index templates


@pytest.mark.parametrize(("pattern", "expected"), [
    ("logs-docker-default", "logs-docker-default"),
    ("docker-%{+yyyy.MM.dd}", "docker-2024.05.01"),
    ("docker-%{+yy-MM-dd_HH}", "docker-24-05-01_10"),
    ("%{[container.name]}-%{+yyyy}", "web-1-2024"),
    ("c-%{[agent.version]}", "c-0.1.0"),
    ("Logs-%{[fields.env]}", "logs-prod"),
    ("x-%{[nope.nothing]:fallback}", "x-fallback"),
    ("img-%{[container.image.name]}", "img-nginx"),
    ("100%-literal", "100%-literal"),
])
def test_index_template_rendering(pattern: str, expected: str) -> None:
    m = meta(fields="fields.env=PROD")
    assert IndexTemplate(pattern).render(m, T0) == expected
    assert IndexTemplate(pattern).render(m.static_fields(), T0) == expected


@pytest.mark.parametrize("pattern", ["logs-%{+yyyy.MM.dd", "x-%{+yyyy.MMM}", "x-%{+}", "x-%{container.name}",
                                     "x-%{[]}", "x-%{[a..b]}", "x-%{[a]junk}", "", "x-%{+yyyy.ww}"])
def test_index_template_syntax_errors(pattern: str) -> None:
    with pytest.raises(IndexTemplateError, match="log-opt 'index'"):
        IndexTemplate(pattern)


def test_missing_field_is_refused_when_the_builder_is_made() -> None:
    template = IndexTemplate("logs-%{[fields.team]}-default")
    with pytest.raises(IndexTemplateError, match=r"field \[fields\.team\] is missing"):
        DocumentBuilder(meta(), template)
    with pytest.raises(IndexTemplateError, match="is not a single value"):
        IndexTemplate("x-%{[container.image]}").render(meta(), T0)
    with pytest.raises(IndexTemplateError, match="not a valid index name"):
        IndexTemplate("x-%{[fields.team]}").validate(meta(fields="fields.team=a b"))
    assert IndexTemplate("pipe-%{[fields.team]}", option="pipeline").validate(meta(fields="fields.team=a b")) == \
        "pipe-a b"


@pytest.mark.parametrize(("pattern", "is_ds", "fields"), [
    ("logs-docker-default", True, {"type": "logs", "dataset": "docker", "namespace": "default"}),
    ("logs-%{[container.name]}-prod", True, {"type": "logs", "dataset": "web-1", "namespace": "prod"}),
    ("LOGS-app-%{+yyyy}", True, {"type": "logs", "dataset": "app", "namespace": "2024"}),
    ("docker-%{+yyyy.MM.dd}", False, None),
    ("logs-docker", False, None),
])
def test_data_stream_fields(pattern: str, is_ds: bool, fields: dict[str, str] | None) -> None:
    template = IndexTemplate(pattern)
    assert template.is_data_stream is is_ds
    b = DocumentBuilder(meta(), template)
    assert b.document(T0, "stdout", b"x").get("data_stream") == fields
    index, body = b.encode_with_index(T0, "stdout", b"x")
    assert index == template.render(meta(), T0)
    assert orjson.loads(body).get("data_stream") == fields


def test_dated_index_follows_each_line() -> None:
    b = builder("docker-%{+yyyy.MM.dd.HH}")
    hour = 3_600_000_000_000
    assert [b.index_name(T0 + n * hour) for n in (0, 1, 14, 0)] == [
        "docker-2024.05.01.10", "docker-2024.05.01.11", "docker-2024.05.02.00", "docker-2024.05.01.10"]


# ---------------------------------------------------------------------------- encode == document


_BUILDERS = [builder(), builder("docker-%{+yyyy.MM}", labels="app", tags="a", fields="env=x", name="n"),
             builder("logs-%{[container.name]}-%{+yyyy}", env="APP_MODE")]


@given(time_nano=st.integers(-(2**63), 2**63 - 1),
       source=st.sampled_from(["stdout", "stderr", "odd \"stream\""]),
       message=st.binary(max_size=300), truncated=st.booleans(), which=st.integers(0, len(_BUILDERS) - 1))
def test_encode_matches_document(time_nano: int, source: str, message: bytes, truncated: bool, which: int) -> None:
    b = _BUILDERS[which]
    doc = b.document(time_nano, source, message, truncated)
    assert orjson.loads(b.encode(time_nano, source, message, truncated)) == doc
    assert orjson.loads(orjson.dumps(doc)) == doc
    when = dt.datetime.fromisoformat(doc["@timestamp"][:19] + "+00:00")
    assert int(when.timestamp()) == time_nano // 10**9
    assert doc["@timestamp"][20:29] == f"{time_nano % 10**9:09d}"


def test_changing_a_document_does_not_change_the_next() -> None:
    b = builder(labels="app")
    first = b.document(T0, "stdout", b"x")
    first["container"]["labels"]["app"] = "changed"
    first["agent"].clear()
    assert b.document(T0, "stdout", b"x")["container"]["labels"] == {"app": "web"}
    assert orjson.loads(b.encode(T0, "stdout", b"x"))["agent"]["type"] == "elastic-log-driver"


@given(lines=st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1) | st.integers(T0, T0 + 3 * 10**9),
                                st.sampled_from(["stdout", "stderr", "odd \"stream\""]),
                                st.binary(max_size=100), st.booleans()), min_size=1, max_size=8),
       which=st.integers(0, len(_BUILDERS) - 1))
def test_encode_line_is_encode_with_index_byte_for_byte(lines: list[tuple[int, str, bytes, bool]], which: int) -> None:
    # The plain path's encode_line (message already without its "\n", caches shared with the other encoders, lines
    # out of time order) makes exactly the bytes of encode_with_index.
    b = _BUILDERS[which]
    for time_nano, source, message, truncated in lines:
        stripped = message[:-1] if message.endswith(b"\n") else message
        assert b.encode_line(time_nano, source, stripped, truncated) == b.encode_with_index(time_nano, source,
                                                                                         message, truncated)


def test_the_per_stream_memo_stays_small_under_many_stream_names() -> None:
    # dockerd names two streams; a FIFO carrying others (bad input) must not grow a cached piece per name for ever.
    b = builder()
    for i in range(1000):
        source = f"source-{i}"
        assert orjson.loads(b.encode_line(T0, source, b"x", False)[1])["stream"] == source
    assert len(b._streams) <= 65 and len(b._ends) <= 65
