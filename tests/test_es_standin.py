"""The real ``elasticsearch`` client (sync and async) against the Elasticsearch stand-in.

These tests pin down that the stand-in answers the way Elasticsearch 8.x does as far as the client can
tell: the product check, bulk item shapes, data-stream rules, security, TLS and injected failures.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, SerializationError, TlsError
from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    AuthenticationException,
    BadRequestError,
    Elasticsearch,
    NotFoundError,
    helpers,
)

from testkit.plugin import wait_until
from tests.es_standin import EsStandin, iter_failed
from tests.tls_certs import TlsFiles, make_tls_files

STREAM = "logs-docker-default"
BACKING_RE = re.compile(r"^\.ds-logs-docker-default-\d{4}\.\d{2}\.\d{2}-000001$")
USERS = {"elastic": "changeme"}
API_KEYS = {"key-id-1": "s3cr3t-api-key"}



@pytest.fixture
def client(es: EsStandin) -> Iterator[Elasticsearch]:
    with Elasticsearch(es.url, max_retries=0, request_timeout=5) as c:
        yield c


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def log_doc(n: int, container: str = "c1", **extra: Any) -> dict[str, Any]:
    return {"@timestamp": f"2024-05-01T12:00:{n:02d}.000Z", "message": f"line {n}",
            "container": {"id": container, "name": f"name-{container}"}, **extra}


def create_actions(docs: list[dict[str, Any]], index: str = STREAM) -> list[dict[str, Any]]:
    return [{"_op_type": "create", "_index": index, **doc} for doc in docs]


# ---------------------------------------------------------------------------- basics


def test_info_passes_the_product_check_and_mirrors_the_compat_media_type(es: EsStandin,
                                                                           client: Elasticsearch) -> None:
    info = client.info()
    assert info["version"]["number"] == "8.15.0"
    assert info["version"]["build_flavor"] == "default"
    assert info["tagline"] == "You Know, for Search"
    assert info.meta.headers["X-Elastic-Product"] == "Elasticsearch"
    assert info.meta.headers["Content-Type"] == "application/vnd.elasticsearch+json;compatible-with=8"
    assert client.ping() is True
    seen = es.requests[0]
    assert seen.headers["accept"] == "application/vnd.elasticsearch+json; compatible-with=8"
    assert seen.headers["user-agent"].startswith("elasticsearch-py/8.")
    assert [r.method for r in es.requests] == ["GET", "HEAD"]


def test_version_is_configurable_and_foreign_compat_versions_are_refused() -> None:
    with EsStandin(version="9.1.0") as es9, Elasticsearch(es9.url, max_retries=0) as client:
        assert client.info()["version"]["number"] == "9.1.0"  # compatible-with=8 is fine for 9.x
        assert client.info()["version"]["lucene_version"].startswith("10.")
    with EsStandin() as es8, Elasticsearch(es8.url, max_retries=0) as client:
        with pytest.raises(BadRequestError) as raised:
            client.perform_request("GET", "/", headers={"accept": "application/vnd.elasticsearch+json; "
                                                                  "compatible-with=9"})
        assert raised.value.error == "media_type_header_exception"


def test_async_client_info_bulk_and_count(es: EsStandin) -> None:
    async def scenario() -> tuple[str, int, list[int]]:
        async with AsyncElasticsearch(es.url, max_retries=0, request_timeout=5) as client:
            info = await client.info()
            results = await asyncio.gather(*[
                client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(i, container=f"c{i}")])
                for i in range(5)
            ])
            count = await client.count(index=STREAM)
            return info["version"]["number"], count["count"], [r["items"][0]["create"]["status"] for r in results]

    version, count, statuses = asyncio.run(scenario())
    assert version == "8.15.0"
    assert count == 5
    assert statuses == [201] * 5
    assert es.bulk_request_count == 5


def test_bulk_create_into_a_data_stream_and_read_back(es: EsStandin, client: Elasticsearch) -> None:
    docs = [log_doc(n, container="c1" if n % 2 else "c2") for n in range(6)]
    ok, errors = helpers.bulk(client, create_actions(list(reversed(docs))), raise_on_error=False)
    assert (ok, errors) == (6, [])

    first = es.bulk_requests[0].ndjson()
    assert list(first[0]) == ["create"] and first[0]["create"]["_index"] == STREAM
    assert es.data_streams() == [STREAM]
    assert all(BACKING_RE.match(d.backing_index) for d in es.stored(STREAM))
    assert es.docs(STREAM) == list(reversed(docs))
    assert es.count(STREAM) == es.count() == 6 and es.count("no-such-index") == 0
    assert all(len(d.id) == 20 for d in es.stored(STREAM))  # generated like ES's auto ids

    assert client.indices.refresh(index=STREAM)["_shards"]["failed"] == 0
    assert client.count(index=STREAM)["count"] == 6
    assert client.count(index="logs-*", query={"term": {"container.id": "c1"}})["count"] == 3

    found = client.search(index=STREAM, query={"term": {"container.id": "c2"}},
                          sort=[{"@timestamp": {"order": "asc"}}], size=2)
    assert found["hits"]["total"] == {"value": 3, "relation": "eq"}
    assert [h["_source"]["message"] for h in found["hits"]["hits"]] == ["line 0", "line 2"]
    assert BACKING_RE.match(found["hits"]["hits"][0]["_index"])
    assert found["hits"]["hits"][0]["sort"] == [1714564800000]
    everything = client.search(index="logs-*", query={"match_all": {}}, size=100)
    assert everything["hits"]["total"]["value"] == 6


def test_duplicate_create_is_a_409_item_and_index_overwrites(es: EsStandin, client: Elasticsearch) -> None:
    first = client.bulk(operations=[{"create": {"_index": STREAM, "_id": "doc-1"}}, log_doc(1)])
    assert first["errors"] is False
    item = first["items"][0]["create"]
    assert item["result"] == "created" and item["status"] == 201 and item["_version"] == 1
    assert item["_shards"] == {"total": 2, "successful": 1, "failed": 0}
    assert {"_seq_no", "_primary_term"} <= set(item)

    ok, errors = helpers.bulk(client, [{"_op_type": "create", "_index": STREAM, "_id": "doc-1", **log_doc(1)}],
                              raise_on_error=False)
    assert ok == 0 and isinstance(errors, list)
    conflict = errors[0]["create"]
    assert conflict["status"] == 409
    assert conflict["_index"] == item["_index"]
    assert conflict["error"]["type"] == "version_conflict_engine_exception"
    assert conflict["error"]["reason"] == "[doc-1]: version conflict, document already exists (current version [1])"
    assert conflict["error"]["shard"] == "0" and conflict["error"]["index"] == item["_index"]
    assert es.duplicates_rejected == 1
    assert len(es.docs(STREAM)) == 1

    # A regular index (not logs-*-*) accepts "index", which overwrites.
    again = client.bulk(operations=[{"index": {"_index": "plain", "_id": "x"}}, {"v": 1},
                                    {"index": {"_index": "plain", "_id": "x"}}, {"v": 2}])
    results = [i["index"] for i in again["items"]]
    assert [(r["result"], r["_version"], r["status"]) for r in results] == [("created", 1, 201), ("updated", 2, 200)]
    assert es.docs("plain") == [{"v": 2}]


def test_data_stream_rules(client: Elasticsearch) -> None:
    response = client.bulk(operations=[
        {"index": {"_index": STREAM}}, log_doc(1),
        {"delete": {"_index": STREAM, "_id": "nope"}},
        {"create": {"_index": STREAM}}, {"message": "no timestamp", "@timestamp": "yesterday-ish"},
        {"create": {"_index": "Logs-Bad"}}, log_doc(2),
    ])
    assert response["errors"] is True
    index_item, delete_item, bad_ts, bad_name = (next(iter(i.values())) for i in response["items"])
    for item in (index_item, delete_item):
        assert item["status"] == 400
        assert item["error"] == {"type": "illegal_argument_exception",
                                 "reason": "only write ops with an op_type of create are allowed in data streams"}
    assert index_item["_index"] == STREAM and index_item["_id"] is None
    assert bad_ts["status"] == 400 and bad_ts["error"]["type"] == "document_parsing_exception"
    assert "failed to parse field [@timestamp] of type [date]" in bad_ts["error"]["reason"]
    assert bad_name["error"]["type"] == "invalid_index_name_exception"


def test_missing_timestamp_and_the_logs_default_pipeline() -> None:
    no_ts = {"message": "hello"}
    with EsStandin() as es, Elasticsearch(es.url, max_retries=0) as client:
        # ES >= 8.8: logs@default-pipeline fills @timestamp when the request names no pipeline ...
        filled = client.bulk(operations=[{"create": {"_index": STREAM}}, no_ts])
        assert filled["errors"] is False and "ingest_took" in filled
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", es.docs(STREAM)[0]["@timestamp"])
        # ... but a request pipeline replaces the default one, and then the document is rejected.
        rejected = client.bulk(operations=[{"create": {"_index": STREAM}}, no_ts], pipeline="my-pipeline")
        item = rejected["items"][0]["create"]
        assert item["status"] == 400
        assert item["error"]["type"] == "document_parsing_exception"
        assert item["error"]["reason"] == "[1:19] failed to parse: data stream timestamp field [@timestamp] is missing"
        assert item["error"]["caused_by"]["type"] == "illegal_argument_exception"
    with EsStandin(logs_default_pipeline=False) as es, Elasticsearch(es.url, max_retries=0) as client:
        item = client.bulk(operations=[{"create": {"_index": STREAM}}, no_ts])["items"][0]["create"]
        assert item["status"] == 400 and BACKING_RE.match(item["_index"])
        assert es.docs(STREAM) == []


def test_pipelines_are_recorded_and_unknown_ones_fail() -> None:
    with EsStandin(pipelines={"docker-logs"}) as es, Elasticsearch(es.url, max_retries=0) as client:
        response = client.bulk(pipeline="docker-logs", operations=[
            {"create": {"_index": STREAM}}, log_doc(1),
            {"create": {"_index": STREAM, "pipeline": "missing"}}, log_doc(2),
        ])
        assert es.bulk_requests[0].query["pipeline"] == "docker-logs"
        assert [d.pipeline for d in es.stored(STREAM)] == ["docker-logs"]
        failed = response["items"][1]["create"]
        assert failed["error"] == {"type": "illegal_argument_exception",
                                   "reason": "pipeline with id [missing] does not exist"}


def test_gzip_request_bodies(es: EsStandin) -> None:
    with Elasticsearch(es.url, max_retries=0, http_compress=True) as client:
        ok, _ = helpers.bulk(client, create_actions([log_doc(n) for n in range(50)]))
    assert ok == 50
    seen = es.bulk_requests[0]
    assert seen.headers["content-encoding"] == "gzip"
    assert seen.raw_body[:2] == b"\x1f\x8b" and len(seen.raw_body) < len(seen.body)
    assert len(seen.ndjson()) == 100
    assert len(es.docs(STREAM)) == 50


def test_search_targets_refresh_and_missing_indices() -> None:
    with EsStandin(require_refresh=True) as es, Elasticsearch(es.url, max_retries=0) as client:
        helpers.bulk(client, create_actions([log_doc(1), log_doc(2, container="c9")]))
        assert client.count(index=STREAM)["count"] == 0  # not refreshed yet, as in ES
        client.indices.refresh(index="logs-*")
        assert client.count(index=STREAM)["count"] == 2
        helpers.bulk(client, create_actions([log_doc(3)]), refresh="wait_for")
        assert client.count(index=STREAM)["count"] == 3
        q = {"bool": {"filter": [{"exists": {"field": "message"}}], "must_not": [{"term": {"container.id": "c9"}}]}}
        assert client.count(index=STREAM, query=q)["count"] == 2
        assert client.search(index="metrics-*")["hits"]["total"]["value"] == 0  # wildcard: no match is fine
        with pytest.raises(NotFoundError) as raised:
            client.search(index="logs-nothing-here")
        assert raised.value.error == "index_not_found_exception"
        assert es.docs("nothing-*") == []


# ---------------------------------------------------------------------------- security


def test_basic_auth() -> None:
    with EsStandin(users=USERS) as es:
        with Elasticsearch(es.url, basic_auth=("elastic", "changeme"), max_retries=0) as good:
            assert good.info()["tagline"] == "You Know, for Search"
            helpers.bulk(good, create_actions([log_doc(1)]))
        assert es.requests[0].headers["authorization"].startswith("Basic ")
        with Elasticsearch(es.url, basic_auth=("elastic", "wrong"), max_retries=0) as bad, \
                pytest.raises(AuthenticationException) as raised:
            bad.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(2)])
        assert raised.value.status_code == 401
        assert raised.value.body["error"]["reason"] == "unable to authenticate user [elastic] for REST request [/_bulk]"
        assert raised.value.meta.headers["WWW-Authenticate"].endswith("ApiKey")
        with Elasticsearch(es.url, max_retries=0) as anonymous, pytest.raises(AuthenticationException) as raised:
            anonymous.count(index=STREAM)
        assert raised.value.error == "security_exception"
        assert raised.value.body["error"]["root_cause"][0]["reason"] == (
            f"missing authentication credentials for REST request [/{STREAM}/_count]")
        assert len(es.docs(STREAM)) == 1


def test_api_key_auth() -> None:
    with EsStandin(api_keys=API_KEYS) as es:
        with Elasticsearch(es.url, api_key=("key-id-1", "s3cr3t-api-key"), max_retries=0) as good:
            assert good.info()["version"]["number"] == "8.15.0"
        assert es.requests[0].headers["authorization"].startswith("ApiKey ")
        for key in (("key-id-1", "wrong"), ("unknown-id", "s3cr3t-api-key")):
            with Elasticsearch(es.url, api_key=key, max_retries=0) as bad, \
                    pytest.raises(AuthenticationException) as raised:
                bad.info()
            error = raised.value.body["error"]
            assert error["reason"] == ("unable to authenticate with provided credentials and anonymous access is not "
                                       "allowed for this request")
            assert error["additional_unsuccessful_credentials"].startswith("API key: ")


# ---------------------------------------------------------------------------- TLS


def test_tls_with_the_test_ca(tls_files: TlsFiles, tmp_path: Path) -> None:
    with EsStandin(tls=tls_files) as es:
        assert es.url.startswith("https://127.0.0.1:")
        with Elasticsearch(es.url, ca_certs=str(tls_files.ca_cert), max_retries=0) as client:
            assert client.info()["tagline"] == "You Know, for Search"
        localhost = es.url.replace("127.0.0.1", "localhost")
        with Elasticsearch(localhost, ca_certs=str(tls_files.ca_cert), max_retries=0) as client:
            assert client.ping()
        other = make_tls_files(tmp_path, prefix="other")
        with Elasticsearch(es.url, ca_certs=str(other.ca_cert), max_retries=0) as client, \
                pytest.raises(TlsError) as raised:
            client.info()
        assert "CERTIFICATE_VERIFY_FAILED" in repr(raised.value)


def test_tls_hostname_mismatch_fails(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path, hostnames=("es.invalid",))
    with EsStandin(tls=files) as es, Elasticsearch(es.url, ca_certs=str(files.ca_cert), max_retries=0) as client, \
            pytest.raises(TlsError) as raised:
        client.info()
    assert "doesn't match 'es.invalid'" in repr(raised.value)


# ---------------------------------------------------------------------------- fault injection


@pytest.mark.parametrize(("status", "error_type"), [(429, "es_rejected_execution_exception"),
                                                     (500, "illegal_state_exception"),
                                                     (502, "bad_gateway_exception"),
                                                     (503, "cluster_block_exception")])
def test_injected_status_is_seen_by_the_client(es: EsStandin, client: Elasticsearch, status: int,
                                               error_type: str) -> None:
    es.fail_next(status, path="_bulk")
    client.info()  # other paths are not affected
    with pytest.raises(ApiError) as raised:
        client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])
    assert raised.value.status_code == status
    assert raised.value.error == error_type
    assert es.docs() == []
    assert client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])["errors"] is False


def test_client_retries_through_injected_503s(es: EsStandin) -> None:
    es.fail_next(503, count=2)
    with Elasticsearch(es.url, max_retries=3, retry_on_status=(429, 503)) as client:
        assert client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])["errors"] is False
    assert [r.status for r in es.requests] == [503, 503, 200]
    assert es.bulk_request_count == 3 and len(es.docs(STREAM)) == 1


def test_fail_until_cleared(es: EsStandin, client: Elasticsearch) -> None:
    es.fail_next(429, count=None)
    for _ in range(3):
        with pytest.raises(ApiError):
            client.info()
    es.clear_faults()
    assert client.info()["tagline"] == "You Know, for Search"


def test_per_item_errors(es: EsStandin, client: Elasticsearch) -> None:
    rule = es.item_error(lambda d: d.get("message") == "line 2", status=429)
    es.item_error(lambda d: d.get("message") == "line 3", status=400, error_type="mapper_parsing_exception",
                  reason="failed to parse field [log.level] of type [long]", count=1)
    ok, errors = helpers.bulk(client, create_actions([log_doc(n) for n in range(5)]), raise_on_error=False)
    assert ok == 3 and isinstance(errors, list)
    by_status = {e["create"]["status"]: e["create"] for e in errors}
    assert by_status[429]["error"]["type"] == "es_rejected_execution_exception"
    assert by_status[429]["error"]["reason"].startswith("rejected execution of primary operation")
    assert by_status[400]["error"] == {"type": "mapper_parsing_exception",
                                       "reason": "failed to parse field [log.level] of type [long]"}
    assert [m["message"] for m in es.docs(STREAM)] == ["line 0", "line 1", "line 4"]
    assert rule.hits == 1 and len(es.failed_items) == 2

    # streaming_bulk retries 429 items itself; a one-shot rule lets the retry through.
    es.clear_faults()
    es.item_error(lambda d: d.get("message") == "line 7", status=429, count=1)
    # (the helper retries failed items only with raise_on_error=False: otherwise it raises BulkIndexError)
    results = list(helpers.streaming_bulk(client, create_actions([log_doc(7)]), max_retries=2, initial_backoff=0,
                                          raise_on_error=False))
    assert results[0][0] is True
    assert es.bulk_request_count == 3
    raw = client.bulk(operations=[{"create": {"_index": STREAM, "_id": "dup"}}, log_doc(8),
                                  {"create": {"_index": STREAM, "_id": "dup"}}, log_doc(8)])
    assert [a for a, _ in iter_failed(raw.body)] == ["create"]


def test_oversized_body_gets_an_empty_413() -> None:
    with EsStandin(max_content_length=1024) as es, Elasticsearch(es.url, max_retries=0) as client:
        with pytest.raises(ApiError) as raised:
            helpers.bulk(client, create_actions([log_doc(n, padding="x" * 100) for n in range(20)]))
        assert raised.value.status_code == 413
        assert raised.value.body is None
        assert client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])["errors"] is False


def test_slow_answer_times_out_in_the_client(es: EsStandin, client: Elasticsearch) -> None:
    es.delay_next(2.0, path="_bulk")
    with pytest.raises(ConnectionTimeout):
        client.options(request_timeout=0.2).bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])
    assert client.info()["tagline"] == "You Know, for Search"


def test_connection_reset_is_a_connection_error(es: EsStandin, client: Elasticsearch) -> None:
    es.reset_next(path="_bulk")
    with pytest.raises(TransportConnectionError):
        client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])
    assert es.bulk_requests[0].status is None
    assert es.docs() == []
    assert client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])["errors"] is False


def test_down_then_up_keeps_documents_and_port(es: EsStandin, client: Elasticsearch) -> None:
    helpers.bulk(client, create_actions([log_doc(1)]))
    url = es.url
    es.down()
    with pytest.raises(TransportConnectionError):
        client.info()
    assert es.docs(STREAM) == [log_doc(1)]
    es.up()
    assert es.url == url
    assert client.count(index=STREAM)["count"] == 1


def test_concurrent_writers_from_many_threads(es: EsStandin, client: Elasticsearch) -> None:
    def writer(worker: int) -> None:
        for batch in range(5):
            docs = [log_doc(n, container=f"w{worker}", batch=batch) for n in range(10)]
            assert helpers.bulk(client, create_actions(docs)) == (10, [])

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert es.bulk_request_count == 40
    assert client.count(index=STREAM)["count"] == 400
    seq_nos = sorted(d.seq_no for d in es.stored(STREAM))
    assert seq_nos == list(range(400))


def test_held_request_does_not_block_others(es: EsStandin, client: Elasticsearch) -> None:
    hold = es.hold_next(path="_bulk")
    outcome: list[Any] = []
    sender = threading.Thread(target=lambda: outcome.append(
        client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])))
    sender.start()
    try:
        wait_until(lambda: es.held_count() == 1, timeout=5, message="the bulk request to be held")
        assert client.info()["tagline"] == "You Know, for Search"  # served while the bulk waits
        assert es.docs() == []
    finally:
        hold.release()
        sender.join(timeout=5)
    assert outcome and outcome[0]["errors"] is False
    assert len(es.docs(STREAM)) == 1


# ---------------------------------------------------------------------------- recorded answers of real ES 8

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "es8"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively (names, ids and dates differ between clusters)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


def assert_like_recorded(name: str, answer: Any, http_status: int) -> None:
    fixture = recorded(name)
    expected = fixture.get("item", fixture.get("answer"))
    assert http_status == fixture["http_status"]
    assert shape(answer) == shape(expected)
    if "reason_pattern" in fixture:
        inner = next(iter(answer.values())) if "item" in fixture else answer
        assert re.fullmatch(fixture["reason_pattern"], inner["error"]["reason"]), inner["error"]["reason"]


def secured_client(es: EsStandin) -> Elasticsearch:
    return Elasticsearch(es.url, basic_auth=("elastic", USERS["elastic"]), max_retries=0, request_timeout=5)


def test_a_missing_write_privilege_is_a_403_item_like_es8() -> None:
    with EsStandin(users={**USERS, "other": "pw"}) as es, secured_client(es) as client:
        es.deny_writes("elastic", ("logs-*",))
        answer = client.bulk(operations=[{"create": {"_index": STREAM, "_id": "a"}}, log_doc(1),
                                         {"create": {"_index": "allowed", "_id": "b"}}, log_doc(2)])
        denied, allowed = (next(iter(item.values())) for item in answer["items"])
        assert answer.meta.status == 200 and answer["errors"] is True
        assert (denied["status"], allowed["status"]) == (403, 201)
        assert "indices:admin/auto_create" in denied["error"]["reason"]  # the stream did not exist yet
        es.allow_writes("elastic")
        client.bulk(operations=[{"create": {"_index": STREAM, "_id": "a"}}, log_doc(1)])
        es.deny_writes("elastic")
        answer = client.bulk(operations=[{"create": {"_index": STREAM, "_id": "c"}}, log_doc(3)])
        assert_like_recorded("bulk_item_403_security_exception", answer["items"][0], answer.meta.status)
        with Elasticsearch(es.url, basic_auth=("other", "pw"), max_retries=0) as other:  # others keep writing
            assert other.bulk(operations=[{"create": {"_index": STREAM, "_id": "d"}}, log_doc(4)])["errors"] is False
        es.allow_writes("elastic")
        assert client.bulk(operations=[{"create": {"_index": STREAM, "_id": "c"}}, log_doc(3)])["errors"] is False
        assert sorted(d.id for d in es.stored(STREAM)) == ["a", "c", "d"]


def test_privileges_apply_to_api_keys_too() -> None:
    with EsStandin(api_keys=API_KEYS) as es, Elasticsearch(es.url, api_key=("key-id-1", "s3cr3t-api-key"),
                                                           max_retries=0) as client:
        es.deny_writes("key-id-1")
        answer = client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])
        reason = answer["items"][0]["create"]["error"]["reason"]
        assert answer["items"][0]["create"]["status"] == 403 and "API key id [key-id-1]" in reason
    with EsStandin() as open_es, pytest.raises(RuntimeError):
        open_es.deny_writes("anyone")  # no security, no privileges


def test_auto_create_denied_is_a_404_item_like_es8() -> None:
    with EsStandin(auto_create_index=False) as es, Elasticsearch(es.url, max_retries=0) as client:
        answer = client.bulk(operations=[{"create": {"_index": STREAM, "_id": "1"}}, log_doc(1)])
        assert_like_recorded("bulk_item_404_index_not_found", answer["items"][0], answer.meta.status)
        assert es.data_streams() == []
        es.auto_create_index = True
        assert client.bulk(operations=[{"create": {"_index": STREAM, "_id": "1"}}, log_doc(1)])["errors"] is False
        es.auto_create_index = False  # existing targets are written as before
        assert client.bulk(operations=[{"create": {"_index": STREAM, "_id": "2"}}, log_doc(2)])["errors"] is False


def test_a_duplicate_create_and_a_401_look_like_es8() -> None:
    with EsStandin() as es, Elasticsearch(es.url, max_retries=0) as client:
        ops = [{"create": {"_index": STREAM, "_id": "1"}}, log_doc(1)]
        client.bulk(operations=ops)
        answer = client.bulk(operations=ops)
        assert_like_recorded("bulk_item_409_version_conflict", answer["items"][0], answer.meta.status)
    with EsStandin(users=USERS) as es, Elasticsearch(es.url, max_retries=0) as anonymous:
        with pytest.raises(AuthenticationException) as raised:
            anonymous.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])
        assert_like_recorded("error_401_missing_credentials", raised.value.body, raised.value.status_code)


def test_rollover_makes_a_new_write_index_where_old_ids_can_be_created_again(es: EsStandin,
                                                                             client: Elasticsearch) -> None:
    ops = [{"create": {"_index": STREAM, "_id": "same"}}, log_doc(1)]
    client.bulk(operations=ops)
    assert client.bulk(operations=ops)["items"][0]["create"]["status"] == 409
    answer = client.indices.rollover(alias=STREAM)
    assert_like_recorded("rollover_data_stream", answer.body, answer.meta.status)
    assert answer["old_index"].endswith("-000001") and answer["new_index"].endswith("-000002")
    item = client.bulk(operations=ops)["items"][0]["create"]  # as in ES: only the write index is checked
    assert item["status"] == 201 and item["_index"] == answer["new_index"]
    assert [d.backing_index for d in es.stored(STREAM)] == [answer["old_index"], answer["new_index"]]
    assert es.backing_indices(STREAM) == [answer["old_index"], answer["new_index"]]
    assert client.count(index=STREAM)["count"] == 2
    with pytest.raises(NotFoundError):
        client.indices.rollover(alias="logs-no-such-stream")


def test_too_large_close_drops_the_connection_instead_of_a_413() -> None:
    with EsStandin(max_content_length=1024, too_large="close") as es, Elasticsearch(es.url, max_retries=0) as client:
        with pytest.raises(TransportConnectionError):
            helpers.bulk(client, create_actions([log_doc(n, padding="x" * 100) for n in range(20)]))
        assert es.bulk_requests[0].status is None and es.docs() == []
        assert client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])["errors"] is False
    with pytest.raises(ValueError):
        EsStandin(too_large="maybe")


def test_a_delayed_bulk_is_stored_even_when_the_client_hangs_up(es: EsStandin, client: Elasticsearch) -> None:
    es.delay_next(1.0, path="_bulk")
    with pytest.raises(ConnectionTimeout):
        client.options(request_timeout=0.2).bulk(operations=[{"create": {"_index": STREAM, "_id": "1"}}, log_doc(1)])
    assert es.count(STREAM) == 1  # carried out at once, as ES does
    retry = client.bulk(operations=[{"create": {"_index": STREAM, "_id": "1"}}, log_doc(1)])
    assert retry["items"][0]["create"]["status"] == 409
    es.delay_next(1.0, path="_bulk", cancel_on_hangup=True)
    with pytest.raises(ConnectionTimeout):
        client.options(request_timeout=0.2).bulk(operations=[{"create": {"_index": STREAM, "_id": "2"}}, log_doc(2)])
    wait_until(lambda: es.bulk_requests[-1].status is None, 5, message="the request to be dropped")
    assert es.count(STREAM) == 1


def test_tampered_and_huge_bulk_answers(es: EsStandin, client: Elasticsearch) -> None:
    es.tamper_next(lambda answer: {**answer, "items": []})
    assert es.pending_faults() == 1
    assert client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(1)])["items"] == []
    assert es.pending_faults() == 0
    assert es.count(STREAM) == 1  # carried out all the same
    es.tamper_next(lambda answer: b"not json")
    with pytest.raises(SerializationError):
        client.bulk(operations=[{"create": {"_index": STREAM}}, log_doc(2)])
    body = b'{"create":{"_index":"logs-docker-default"}}\n{"@timestamp":1}\n'
    for declared in (False, True):
        es.huge_answer_next(1 << 20, declared=declared)
        request = urllib.request.Request(f"{es.url}/_bulk", data=body,
                                         headers={"Content-Type": "application/x-ndjson"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            data = answer.read()
            assert (answer.headers.get("Content-Length") == str(1 << 20)) is declared
        assert len(data) == 1 << 20 and data.startswith(b'{"errors":false,"items":[{"create":')
    assert es.count(STREAM) == 4
