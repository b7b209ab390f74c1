"""Our document for one line beside the one Elastic's plugin (8.x) builds for the same Info and line.

Elastic's document is written out by hand from its code:
- x-pack/dockerlogbeat/pipelinemanager/clientLogReader.go, ClientLogger.publishLoop: message (strings.TrimSpace
  of the line), container.{labels (helper.DeDotLabels(ContainerLabels, true): every label, dots -> "_"), id, name
  (helper.ExtractContainerName: the name without its "/"), image.name and image.tag (ContainerImageName split at
  every ":", first two parts)}, host.name (the plugin's host name), @timestamp (the entry's time_nano);
- libbeat/publisher/processing/default.go, MakeDefaultBeatSupport -> WithECS (ecs.version, libbeat/ecs: "8.0.0"),
  WithHost (host.name: added without overwrite, so publishLoop's value stays), WithAgentMeta (agent.ephemeral_id,
  id, name = the `name` option or else the host name, type = beat.Info.Beat, version);
- x-pack/dockerlogbeat/pipelinemanager/libbeattools.go, getBeatInfo: Beat "elastic-log-driver", ID from
  /tmp/meta.json (kept), EphemeralID a new UUID per pipeline;
- libbeat's JSON encoding of @timestamp: common.Time, layout "2006-01-02T15:04:05.000Z" (milliseconds).

Every field that differs must be in DIFFERENCES and in docs/migrating-from-elastic.md's field table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipper.documents import ECS_VERSION, DocumentBuilder, container_meta
from shipper.index_names import IndexTemplate
from supervisor.logopts import parse_log_options

ROOT = Path(__file__).resolve().parents[2]
CID = "4f3c2b1a" * 8
INFO: dict[str, Any] = {
    "ContainerID": CID,
    "ContainerName": "/shop-web-1",
    "ContainerImageName": "registry.example.com:5000/shop/web:1.25",
    "ContainerLabels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "web", "tier": "front"},
    "Config": {"hosts": "https://es:9200"},
}
LINE = b"  indented: GET /cart 200  \n"  # dockerd strips "\n" before the FIFO; the reader puts it back
T_NANO = 1_714_558_830_123_456_789  # 2024-05-01T10:20:30.123456789Z
HOST, AGENT_ID, EPHEMERAL_ID, VERSION = "docker-host-1", "8d1e0f5a-0000-4000-8000-000000000001", \
    "2b9c6e1d-0000-4000-8000-000000000002", "8.15.0"

ELASTIC_DOCUMENT: dict[str, Any] = {
    "@timestamp": "2024-05-01T10:20:30.123Z",
    "message": "indented: GET /cart 200",
    "container": {
        "labels": {"com_docker_compose_project": "shop", "com_docker_compose_service": "web", "tier": "front"},
        "id": CID,
        "name": "shop-web-1",
        "image": {"name": "registry.example.com", "tag": "5000/shop/web"},
    },
    "host": {"name": HOST},
    "agent": {"ephemeral_id": EPHEMERAL_ID, "id": AGENT_ID, "name": HOST, "type": "elastic-log-driver",
              "version": VERSION},
    "ecs": {"version": "8.0.0"},
}

# Field -> what differs. docs/migrating-from-elastic.md lists each one.
DIFFERENCES = {
    "@timestamp": "nanoseconds (Elastic: milliseconds)",
    "message": "leading and trailing whitespace kept (Elastic trims it)",
    "container.image.name": "a registry port is not taken for a tag",
    "container.image.tag": "a registry port is not taken for a tag",
    "stream": "added: stdout or stderr",
    "data_stream.type": "added: the default index is the data stream logs-docker-default",
    "data_stream.dataset": "added with the data stream",
    "data_stream.namespace": "added with the data stream",
}


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and not (prefix + key).endswith("labels"):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def our_document() -> dict[str, Any]:
    options = dict(parse_log_options(INFO["Config"]).values)
    meta = container_meta(INFO, options, HOST, AGENT_ID, VERSION, EPHEMERAL_ID)
    builder = DocumentBuilder(meta, IndexTemplate(options["index"]))
    return builder.document(T_NANO, "stdout", LINE)


def test_the_document_matches_elastics_except_the_listed_differences() -> None:
    ours, theirs = flatten(our_document()), flatten(ELASTIC_DOCUMENT)
    differing = {path for path in ours.keys() | theirs.keys() if ours.get(path) != theirs.get(path)}
    assert differing == set(DIFFERENCES), {p: (ours.get(p), theirs.get(p)) for p in differing}
    assert theirs["ecs.version"] == ECS_VERSION


def test_the_differences_are_what_they_claim() -> None:
    ours = flatten(our_document())
    assert ours["@timestamp"] == "2024-05-01T10:20:30.123456789Z"
    assert ours["message"] == "  indented: GET /cart 200  "
    assert (ours["container.image.name"], ours["container.image.tag"]) == ("registry.example.com:5000/shop/web",
                                                                           "1.25")
    assert ours["stream"] == "stdout"


def test_every_difference_is_in_the_migration_doc() -> None:
    text = (ROOT / "docs" / "migrating-from-elastic.md").read_text()
    missing = [path for path in DIFFERENCES if f"| `{path}` |" not in text]
    assert not missing, f"docs/migrating-from-elastic.md's field table lacks {missing}"


def test_labels_given_select_as_docker_does() -> None:
    options = dict(parse_log_options({**INFO["Config"], "labels": "tier"}).values)
    meta = container_meta(INFO, options, HOST, AGENT_ID, VERSION, EPHEMERAL_ID)
    assert meta.static_fields()["container"]["labels"] == {"tier": "front"}


def test_labels_that_are_not_an_object_give_none() -> None:
    options = dict(parse_log_options(INFO["Config"]).values)
    meta = container_meta({**INFO, "ContainerLabels": ["a=b"]}, options, HOST, AGENT_ID, VERSION, EPHEMERAL_ID)
    assert "labels" not in meta.static_fields()["container"]
