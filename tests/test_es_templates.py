"""The stand-in's index templates and ILM policies (tests/es_templates.py), through the real client, compared with
the answers of Elasticsearch 8 kept in tests/fixtures/es8/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from tests.es_standin import EsStandin
from tests.test_es_standin import assert_like_recorded

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "es8"
POLICY = {"phases": {"hot": {"actions": {"rollover": {"max_primary_shard_size": "50gb", "max_age": "30d"}}}}}


@pytest.fixture
def client() -> Any:
    with EsStandin() as es, Elasticsearch(es.url, max_retries=0, request_timeout=5) as client:
        client.standin = es  # type: ignore[attr-defined]
        yield client


def test_an_index_template_is_stored_and_answered_like_es8(client: Elasticsearch) -> None:
    assert client.indices.exists_index_template(name="template_1").body is False
    with pytest.raises(NotFoundError) as missing:
        client.indices.get_index_template(name="nothing")
    assert_like_recorded("index_template_missing_404", missing.value.body, missing.value.meta.status)
    answer = client.indices.put_index_template(
        name="template_1", index_patterns=["te*"], priority=500, data_stream={},
        template={"settings": {"index": {"lifecycle": {"name": "my_policy"}}},
                  "mappings": {"properties": {"@timestamp": {"type": "date"}}}},
        meta={"description": "set by me"})
    assert answer.body == {"acknowledged": True}
    got = client.indices.get_index_template(name="template_1")
    assert_like_recorded("index_template_get", got.body, got.meta.status)
    assert client.indices.exists_index_template(name="template_1").body is True


def test_create_true_refuses_a_template_that_exists(client: Elasticsearch) -> None:
    client.indices.put_index_template(name="t", index_patterns=["t-*"], create=True)
    with pytest.raises(BadRequestError, match="index template \\[t\\] already exists"):
        client.indices.put_index_template(name="t", index_patterns=["t-*"], create=True)
    client.indices.put_index_template(name="t", index_patterns=["u-*"])  # without create: replaced
    assert client.standin.index_template("t")["index_patterns"] == ["u-*"]  # type: ignore[attr-defined]


def test_an_ilm_policy_is_stored_and_answered_like_es8(client: Elasticsearch) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.ilm.get_lifecycle(name="nothing")
    assert_like_recorded("ilm_policy_missing_404", missing.value.body, missing.value.meta.status)
    assert client.ilm.put_lifecycle(name="my_policy", policy=POLICY).body == {"acknowledged": True}
    got = client.ilm.get_lifecycle(name="my_policy")
    assert_like_recorded("ilm_policy_get", got.body, got.meta.status)
    assert got["my_policy"]["version"] == 1
    assert got["my_policy"]["policy"]["phases"]["hot"]["min_age"] == "0ms"
    client.ilm.put_lifecycle(name="my_policy", policy=POLICY)
    assert client.ilm.get_lifecycle(name="my_policy")["my_policy"]["version"] == 2


def test_a_new_index_takes_its_templates_settings_and_mappings(client: Elasticsearch) -> None:
    es: EsStandin = client.standin  # type: ignore[attr-defined]
    mappings = {"properties": {"message": {"type": "match_only_text"}}}
    client.indices.put_index_template(name="low", index_patterns=["docker-*"], priority=1,
                                      template={"settings": {"index.number_of_shards": 3}})
    client.indices.put_index_template(name="high", index_patterns=["docker-*"], priority=2,
                                      template={"mappings": mappings, "settings": {"index.lifecycle.name": "p"}})
    doc = {"@timestamp": "2024-05-01T00:00:00Z", "message": "m"}
    client.bulk(operations=[{"create": {"_index": "docker-2024.05.01"}}, doc,
                            {"create": {"_index": "other"}}, doc])
    assert es.created_with("docker-2024.05.01") == ({"index.lifecycle.name": "p"}, mappings)
    assert es.created_with("other") == ({}, {})
    client.ilm.put_lifecycle(name="p", policy=POLICY)
    assert client.ilm.get_lifecycle(name="p")["p"]["in_use_by"] == {
        "indices": ["docker-2024.05.01"], "data_streams": [], "composable_templates": ["high"]}


def test_a_template_with_data_stream_makes_a_data_stream(client: Elasticsearch) -> None:
    es: EsStandin = client.standin  # type: ignore[attr-defined]
    client.indices.put_index_template(name="ds", index_patterns=["applogs*"], priority=150, data_stream={})
    answer = client.bulk(operations=[{"index": {"_index": "applogs"}}, {"@timestamp": "2024-05-01T00:00:00Z"},
                                     {"create": {"_index": "applogs"}}, {"@timestamp": "2024-05-01T00:00:00Z"}])
    index_item, create_item = (next(iter(item.values())) for item in answer["items"])
    assert index_item["status"] == 400 and create_item["status"] == 201  # only create writes a data stream
    assert es.data_streams() == ["applogs"]


def test_a_user_template_above_the_builtin_priority_takes_logs_streams(client: Elasticsearch) -> None:
    es: EsStandin = client.standin  # type: ignore[attr-defined]
    client.indices.put_index_template(name="mine", index_patterns=["logs-mine-*"], priority=50,
                                      template={"settings": {"index.number_of_shards": 2}})
    client.bulk(operations=[{"create": {"_index": "logs-mine-a"}}, {"@timestamp": "2024-05-01T00:00:00Z"}])
    assert es.created_with("logs-mine-a") == ({}, {})  # the built-in logs-*-* (priority 100) wins
    client.indices.put_index_template(name="mine", index_patterns=["logs-mine-*"], priority=200, data_stream={},
                                      template={"settings": {"index.number_of_shards": 2}})
    client.bulk(operations=[{"create": {"_index": "logs-mine-b"}}, {"@timestamp": "2024-05-01T00:00:00Z"}])
    assert es.created_with("logs-mine-b") == ({"index.number_of_shards": 2}, {})


def test_templates_of_one_priority_may_not_overlap(client: Elasticsearch) -> None:
    client.indices.put_index_template(name="docker", index_patterns=["docker-*"], priority=150)
    with pytest.raises(BadRequestError) as clash:
        client.indices.put_index_template(name="docker-web", index_patterns=["docker-web-*"], priority=150)
    assert clash.value.body["error"]["reason"] == (
        "index template [docker-web] has index patterns [docker-web-*] matching patterns from existing templates "
        "[docker] with patterns (docker => [docker-*]) that have the same priority [150], multiple index templates "
        "may not match during index creation, please use a different priority")
    client.indices.put_index_template(name="docker-web", index_patterns=["docker-web-*"], priority=151)
    client.indices.put_index_template(name="other", index_patterns=["a*b"], priority=150)
    client.indices.put_index_template(name="disjoint", index_patterns=["a*c"], priority=150)  # no name matches both
    client.indices.put_index_template(name="docker", index_patterns=["docker-*"], priority=150)  # itself: replaced
