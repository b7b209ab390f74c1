"""JSON lines that Elasticsearch's mapping refuses (tests/es_mappings.py) go the dead-letter way: counted, the
original kept whole in the dead-letter index, and the container's other lines still arrive."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shipper.documents import DocumentBuilder, container_meta
from shipper.feed import PendingDoc
from shipper.index_names import IndexTemplate
from shipper.json_lines import JsonConfig, apply_json, decode_line, dumps
from tests.es_standin import EsStandin
from tests.shipper.bulk_harness import CONTAINER, INDEX, all_finished, ship

T0 = 1_714_558_830_000_000_000
INFO = {"ContainerID": CONTAINER, "ContainerName": "/api", "ContainerImageName": "api:1"}


def deep(levels: int) -> dict[str, Any]:
    obj: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        obj = {"o": obj}
    return obj


# (line, refused by the mapping?) in the order the container printed them
LINES: list[tuple[bytes, bool]] = [
    (b'{"msg": "start", "http": {"status": 200}}', False),
    (b'{"msg": "status as text", "http": {"status": "OK"}}', True),  # long field given text
    (b"a plain line among the JSON ones", False),
    (b'{"msg": "user object", "user": {"id": 1}}', False),
    (b'{"msg": "user flat", "user": "alice"}', True),  # object field given a concrete value
    (orjson.dumps({"msg": "deep", **deep(25)}), True),  # index.mapping.depth.limit (20)
    (b'{"msg": "huge id", "n": 18446744073709551616}', True),  # exact, beyond a long
    (orjson.dumps({"msg": "wide", **{f"k{i}": "v" for i in range(1200)}}), True),  # total_fields.limit (1000)
    (b'{"msg": "end", "http": {"status": 404}}', False),
]


def documents(cfg: JsonConfig) -> list[PendingDoc]:
    """The container's lines as the shipper makes them: decode, the plugin's document, apply_json, dumps."""
    builder = DocumentBuilder(container_meta(INFO, {}, "docker-host", "agent-1", "0.1.0"), IndexTemplate(INDEX))
    docs = []
    for number, (line, _) in enumerate(LINES):
        decoded = decode_line(line, cfg)
        doc = builder.document(T0 + number, "stdout", b"")
        del doc["message"]
        text = None if decoded.own_event else decoded.text.decode("utf-8", "replace")
        body = dumps(apply_json(doc, text, decoded.fields, decoded.error, cfg))
        docs.append(PendingDoc(CONTAINER, (0, number + 1), f"doc-{number}", INDEX, body))
    return docs


@pytest.mark.parametrize("under_root", [True, False])
def test_mapping_conflicts_are_dead_lettered_and_the_other_lines_arrive(es: EsStandin, under_root: bool) -> None:
    cfg = JsonConfig(keys_under_root=under_root, overwrite_keys=False, add_error_key=True, message_key="msg",
                     expand_keys=False, ignore_decoding_error=False)
    run = ship(es, documents(cfg), all_finished(len(LINES)), dead_letter_index="dead-letters")

    refused = [line for line, bad in LINES if bad]
    assert run.bulk.counters["dead_lettered_total"] == len(refused)
    assert run.bulk.failed_reasons == {"400 document_parsing_exception": len(refused) - 1,
                                       "400 illegal_argument_exception": 1}  # the depth limit
    assert sorted(run.finished) == [(0, n + 1) for n in range(len(LINES))]  # every line finished, once
    assert run.bulk.queued_bytes == 0

    arrived = [doc["message"] for doc in es.docs(INDEX)]
    assert sorted(arrived) == sorted(["start", "a plain line among the JSON ones", "user object", "end"])
    dead = es.docs("dead-letters")
    originals = [orjson.loads(letter["original"]) for letter in dead]
    assert sorted(o["message"] for o in originals) == sorted(
        orjson.loads(line)["msg"] for line in refused)
    huge = next(letter["original"] for letter in dead if '"huge id"' in letter["original"])
    assert "18446744073709551616" in huge  # the original is kept exactly, the big integer too
    assert {letter["index"] for letter in dead} == {INDEX}
