"""ContainerFeed with processing (multiline, filters, JSON): per-stream events, documents as Filebeat writes them,
filtered events done at once, and cuts that a restarted shipper replaying the same records makes again."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.entry_pb2 import LogEntry
from proto.framing import Position, encode_record
from proto.messages import Records
from proto.options import LogOptionError
from shipper.documents import DocumentBuilder, container_meta
from shipper.encoder import build_encoder, build_processor, validate_documents
from shipper.feed import ContainerFeed, PendingDoc
from shipper.index_names import IndexTemplate
from shipper.processing import MAX_EVENT_SPAN, MAX_STREAMS, TIMEOUT_GRACE_NS
from supervisor.logopts import parse_log_options
from testkit.dockerd_driver import make_info

A = "a" * 64
S = 1_000_000_000
JAVA_PATTERN = r"^[[:space:]]+(at|\.{3})[[:space:]]+\b|^Caused by:"
BASE_OPTIONS: dict[str, Any] = {"index": "logs-docker-default", "tags": (), "fields": ()}


def _feed(**options: Any) -> ContainerFeed:
    opts = {**BASE_OPTIONS, **options}
    info = make_info(A)
    processor = build_processor(info, opts, "host", "agent", "1.0")
    assert processor is not None
    return ContainerFeed(A, build_encoder(info, opts, "host", "agent", "1.0"), processor=processor)


def _java_feed(**options: Any) -> ContainerFeed:
    return _feed(**{"multiline.pattern": JAVA_PATTERN, "multiline.match": "after", **options})


def _record(line: bytes, source: str = "stdout", time_nano: int = S) -> bytes:
    return encode_record(LogEntry(source=source, time_nano=time_nano, line=line + b"\n").SerializeToString())


def _part(line: bytes, source: str, partial_id: str, last: bool, time_nano: int) -> bytes:
    """A part of a line dockerd split at 16 KiB (the last one ends with "\n", as the reader stores it)."""
    entry = LogEntry(source=source, time_nano=time_nano, line=line + (b"\n" if last else b""), partial=True)
    entry.partial_log_metadata.id = partial_id
    entry.partial_log_metadata.last = last
    return encode_record(entry.SerializeToString())


def _records(feed: ContainerFeed, records: list[bytes], offset: int = 0, stopped: bool = False) -> list[PendingDoc]:
    data = b"".join(records)
    return feed.on_records(Records(A, 0, offset, 0, offset + len(data), data, 0, stopped))


def _body(doc: PendingDoc) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(doc.body)
    return body


def test_a_java_trace_is_one_document_flagged_multiline_and_stderr_never_joins_it() -> None:
    feed = _java_feed()
    docs = _records(feed, [
        _record(b'Exception in thread "main" java.lang.IllegalStateException'),
        _record(b"\tat com.example.Author.getBookIds(Author.java:38)"),
        _record(b"a stderr line", "stderr"),
        _record(b"Caused by: java.lang.NullPointerException"),
        _record(b"\t... 1 more"),
        _record(b"next"),
    ])
    assert [(_body(d)["stream"], _body(d)["message"]) for d in docs] == [
        ("stdout", 'Exception in thread "main" java.lang.IllegalStateException\n'
                   "\tat com.example.Author.getBookIds(Author.java:38)\n"
                   "Caused by: java.lang.NullPointerException\n\t... 1 more"),
    ]
    assert _body(docs[0])["log"] == {"flags": ["multiline"]}
    assert docs[0].doc_id.endswith("0.0")  # the first line's position
    # "a stderr line" and "next" are open: either may still be followed by "\tat ..." on its stream.
    assert feed.processor is not None and len(feed.processor.open_starts) == 2
    (err, nxt) = feed.flush_events()
    assert (_body(err)["stream"], _body(err)["message"]) == ("stderr", "a stderr line") and "log" not in _body(err)
    assert _body(nxt)["message"] == "next"


def test_the_ack_never_passes_the_first_line_of_an_open_event() -> None:
    feed = _java_feed()
    first = [_record(b"Exception"), _record(b"\tat x.y(Z.java:1)"), _record(b"err1", "stderr"),
             _record(b"err2", "stderr")]
    (err1,) = _records(feed, first)
    assert feed.done(err1.end) in (None, (0, 0))  # "Exception" is still open
    tail = [_record(b"\tat x.z(Z.java:2)"), _record(b"next")]
    offset = sum(map(len, first))
    (trace,) = _records(feed, tail, offset)
    assert _body(trace)["message"] == "Exception\n\tat x.y(Z.java:1)\n\tat x.z(Z.java:2)"
    # "err2" is open and started inside the trace: a restart at err2 would send the trace's tail again as a
    # document of its own, so the acknowledgement stays at the trace's start.
    assert feed.done(trace.end) in (None, (0, 0))
    for doc in feed.flush_events():
        feed.done(doc.end)
    assert feed.acked == (0, offset + sum(map(len, tail)))


def test_the_ack_stays_at_an_open_event_while_nothing_was_sent_yet() -> None:
    feed = _feed(**{"multiline.pattern": "^ ", "exclude_lines": ("^DEBUG",)})
    _records(feed, [_record(b"head"), _record(b"DEBUG y", "stderr"), _record(b"DEBUG z", "stderr")])
    assert feed.advance() == (0, 0)  # "DEBUG y" is dropped, so done, but "head" before it is open


def test_filtered_events_are_done_at_once_and_counted() -> None:
    feed = _feed(include_lines=("^ERR", "^WARN"), exclude_lines=("debug",))
    docs = _records(feed, [_record(b"INFO hello"), _record(b"ERR boom"), _record(b"WARN debug only"),
                           _record(b"INFO bye")])
    assert [_body(d)["message"] for d in docs] == ["ERR boom"]
    assert feed.dropped_total == 3 and feed.processor is not None
    # With the one kept document done, the acknowledgement reaches the end: dropped lines need nothing.
    assert feed.done(docs[0].end) == feed.next_pos


def test_filters_see_the_joined_event() -> None:
    feed = _java_feed(include_lines=("NullPointerException",))
    docs = _records(feed, [_record(b"Exception"), _record(b"Caused by: java.lang.NullPointerException"),
                           _record(b"Other"), _record(b"\tat a.b(C.java:1)"), _record(b"last")], stopped=True)
    assert [_body(d)["message"] for d in docs] == ["Exception\nCaused by: java.lang.NullPointerException"]
    assert feed.dropped_total == 2


def test_a_line_later_than_the_timeout_starts_a_new_event_whatever_its_text() -> None:
    feed = _java_feed(**{"multiline.timeout": 5.0})
    docs = _records(feed, [_record(b"Exception", time_nano=S), _record(b"\tat a.b(C.java:1)", time_nano=2 * S),
                           _record(b"\tat late(C.java:2)", time_nano=7 * S)], stopped=True)
    assert [_body(d)["message"] for d in docs] == ["Exception\n\tat a.b(C.java:1)", "\tat late(C.java:2)"]


def test_a_record_of_the_other_stream_past_the_timeout_ends_the_open_event() -> None:
    feed = _java_feed(**{"multiline.timeout": 5.0})
    docs = _records(feed, [_record(b"Exception", time_nano=S), _record(b"err", "stderr", time_nano=7 * S)])
    assert [_body(d)["message"] for d in docs] == ["Exception"]  # "err" is open


def test_a_quiet_container_s_event_ends_by_the_wall_clock_only_after_timeout_and_grace() -> None:
    feed = _java_feed(**{"multiline.timeout": 5.0})
    assert _records(feed, [_record(b"Exception", time_nano=S), _record(b"\tat a.b(C.java:1)", time_nano=2 * S)]) == []
    assert feed.expire(2 * S + 5 * S + TIMEOUT_GRACE_NS - 1) == []
    (doc,) = feed.expire(2 * S + 5 * S + TIMEOUT_GRACE_NS)
    assert _body(doc)["message"] == "Exception\n\tat a.b(C.java:1)" and not feed.group


def test_a_line_in_time_for_an_event_the_wall_clock_already_ended_is_counted() -> None:
    feed = _java_feed(**{"multiline.timeout": 5.0})
    first = [_record(b"Exception", time_nano=S)]
    _records(feed, first)
    assert len(feed.expire(S + 5 * S + TIMEOUT_GRACE_NS)) == 1
    # Written 4 s after "Exception" but read later than the grace: a replay would join it, so it is counted (and
    # logged once): the one case the grace does not cover.
    late = [_record(b"\tat a.b(C.java:1)", time_nano=5 * S)]
    _records(feed, late, offset=len(first[0]))
    assert feed.processor is not None and feed.processor.late_lines_total == 1


def test_new_processing_settings_send_the_open_events_as_they_are_then_apply() -> None:
    feed = _java_feed()
    first = [_record(b"Exception"), _record(b"\tat a.b(C.java:1)")]
    assert _records(feed, first) == []
    (doc,) = feed.reconfigure(None)  # the container started again without multiline
    assert _body(doc)["message"] == "Exception\n\tat a.b(C.java:1)"
    (plain,) = _records(feed, [_record(b"\tat c.d(E.java:2)")], offset=sum(map(len, first)))
    assert _body(plain)["message"] == "\tat c.d(E.java:2)"
    feed.done(doc.end)
    assert feed.done(plain.end) == feed.next_pos


def test_a_stopped_container_flushes_its_open_events() -> None:
    feed = _java_feed()
    docs = _records(feed, [_record(b"out"), _record(b"err", "stderr")], stopped=True)
    assert sorted(_body(d)["message"] for d in docs) == ["err", "out"] and not feed.group


def test_an_event_that_never_ends_is_cut_so_it_cannot_hold_the_acknowledgement_for_ever() -> None:
    feed = _feed(**{"multiline.pattern": "^ ", "multiline.max_lines": 5})
    docs = _records(feed, [_record(b"head")] + [_record(b" more")] * (MAX_EVENT_SPAN + 1))
    assert len(docs) == 1 and _body(docs[0])["log"] == {"flags": ["truncated", "multiline"]}
    assert feed.processor is not None and feed.processor.span_cut_total == 1


def test_open_events_are_bounded_whatever_the_source_names() -> None:
    feed = _feed(**{"multiline.pattern": "^ "})
    docs = _records(feed, [_record(b"head %d" % n, f"src-{n}") for n in range(MAX_STREAMS + 2)])
    assert [_body(d)["message"] for d in docs] == ["head 0", "head 1"]  # the oldest ones, ended as they were
    assert feed.processor is not None and len(feed.processor.joiners) == MAX_STREAMS


def test_json_lines_join_on_the_message_key_and_keep_their_fields() -> None:
    feed = _feed(**{"json.message_key": "msg", "json.keys_under_root": True, "multiline.pattern": "^ ",
                    "multiline.match": "after"})
    docs = _records(feed, [_record(b'{"msg": "Exception", "level": "error"}'), _record(b'{"msg": " at a.b"}'),
                           _record(b"not json"), _record(b'{"level": "info"}')], stopped=True)
    bodies = [_body(d) for d in docs]
    assert bodies[0]["message"] == "Exception\n at a.b" and bodies[0]["log"] == {"flags": ["multiline"]}
    assert bodies[1]["message"] == "not json"
    assert bodies[2]["level"] == "info" and "message" not in bodies[2]  # no message key: its own event


# ---------------------------------------------------------------------------------------------------- replay


LINES = [b"Exception", b"\tat a.b(C.java:1)", b"Caused by: x", b"\t... 2 more", b"INFO ok", b"DEBUG noise"]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_restart_at_the_acknowledgement_rebuilds_the_same_documents(data: st.DataObject) -> None:
    """Random Java-ish output on two streams with random gaps, some lines in two parts; documents finished in random
    order; the shipper
    restarts at the acknowledged position: every document the replay makes for an _id the first run made has the
    same content (a different one would be lost to 409), it makes no other, and it makes again every one not done."""
    records: list[bytes] = []
    now = S
    second_parts: dict[str, bytes] = {}  # a line dockerd split, per stream: its last part is still to come
    for n in range(data.draw(st.integers(1, 30))):
        now += data.draw(st.sampled_from([0, S // 10, 6 * S]))  # sometimes past the 5 s timeout
        source = data.draw(st.sampled_from(["stdout", "stderr"]))
        if source in second_parts:
            records.append(second_parts.pop(source))
            continue
        line = data.draw(st.sampled_from(LINES))
        if data.draw(st.booleans()) or len(line) < 2:
            records.append(_record(line, source, now))
        else:  # split in two parts, maybe with records of the other stream between them
            records.append(_part(line[:2], source, f"p{n}", False, now))
            second_parts[source] = _part(line[2:], source, f"p{n}", True, now)
    records += second_parts.values()
    options = {"multiline.timeout": 5.0, "exclude_lines": ("^DEBUG",)}
    feed = _java_feed(**options)
    docs = _records(feed, records)
    order = data.draw(st.permutations(docs))
    docs += feed.flush_events()  # made, never done: as if the container stopped after the restart
    done = order[: data.draw(st.integers(0, len(order)))]
    acked: Position = (0, 0)
    for doc in done:
        acked = feed.done(doc.end) or acked
    acked = feed.advance() or acked
    first = {d.doc_id: _body(d)["message"] for d in docs}
    data_all = b"".join(records)
    replay = _java_feed(**options)
    again = replay.on_records(Records(A, 0, acked[1], 0, len(data_all), data_all[acked[1]:], 0, True))
    for doc in again:
        # Cut at the same places: no _id reused for other lines (lost to 409), no tail of an event made a
        # document of its own (a duplicate second half).
        assert doc.doc_id in first, f"new document {_body(doc)['message']!r} at {doc.doc_id}"
        assert _body(doc)["message"] == first[doc.doc_id], "an _id reused for other lines"
    # Every document not yet done in the first run is made again by the replay (or it would be lost).
    done_ids = {d.doc_id for d in done}
    again_ids = {d.doc_id for d in again}
    assert {d.doc_id for d in docs} - done_ids <= again_ids


def test_a_json_event_s_document_has_the_plain_document_s_fields() -> None:
    feed = _feed(**{"json.add_error_key": True, "multiline.pattern": "^ "})
    (doc,) = _records(feed, [_record(b"head", time_nano=5 * S), _record(b" more", time_nano=5 * S)], stopped=True)
    info = make_info(A)
    builder = DocumentBuilder(container_meta(info, BASE_OPTIONS, "host", "agent", "1.0"),
                              IndexTemplate(BASE_OPTIONS["index"]))
    body = _body(doc)
    assert body.pop("error")["type"] == "json"  # not JSON: shipped as text, with the error asked for
    assert body == builder.document(5 * S, "stdout", b"head\n more", multiline=True)


@settings(max_examples=60, deadline=None)
@given(under_root=st.booleans(), overwrite=st.booleans(), expand=st.booleans(),
       line=st.sampled_from([b'{"message": "hi", "level": "info", "user": {"id": 1}}',
                             b'{"message": "hi", "container": {"name": "mine"}, "host.name": "h2"}',
                             b'{"message": "hi", "agent": "x", "tags": ["a"], "stream": "s", "@timestamp": "t"}',
                             b'{"message": "hi", "error": {"message": "e"}, "log": {"level": "warn"}}',
                             b'{"message": 3}', b"not json"]))
def test_json_documents_equal_the_plain_document_with_apply_json(under_root: bool, overwrite: bool, expand: bool,
                                                                 line: bytes) -> None:
    """The spliced documents (the event's keys meet none of the constant part's) and the merged ones alike are what
    DocumentBuilder.document without message, then apply_json, make."""
    from shipper import json_lines

    options = {"json.message_key": "message", "json.keys_under_root": under_root, "json.overwrite_keys": overwrite,
               "json.expand_keys": expand, "json.add_error_key": True}
    feed = _feed(**options, tags=("t1",), fields=(("team", "web"),))
    (doc,) = _records(feed, [_record(line, time_nano=5 * S)], stopped=True)
    opts = {**BASE_OPTIONS, **options, "tags": ("t1",), "fields": (("team", "web"),)}
    builder = DocumentBuilder(container_meta(make_info(A), opts, "host", "agent", "1.0"),
                              IndexTemplate(BASE_OPTIONS["index"]))
    config = json_lines.JsonConfig.from_options(opts)
    assert config is not None
    decoded = json_lines.decode_line(line, config)
    expected = builder.document(5 * S, "stdout", b"")
    del expected["message"]
    expected = json_lines.apply_json(expected, decoded.text.decode(), decoded.fields, decoded.error, config)
    assert _body(doc) == orjson.loads(json_lines.dumps(expected))
    pairs = json.loads(doc.body, object_pairs_hook=lambda items: items)
    assert len({key for key, _ in pairs}) == len(pairs), "a key written twice"


def test_validation_builds_the_container_metadata_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # It runs on every StartLogging of a shipping container (labels, environment, custom fields: per call).
    from shipper import encoder
    built: list[object] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return container_meta(*args, **kwargs)

    options = parse_log_options({"hosts": "es:9200", "pipeline": "p-%{+yyyy}", "multiline.type": "pattern",
                                 "multiline.pattern": "^x", "json.keys_under_root": "true"}).values
    assert build_processor(make_info(A), options, "host", "agent", "1.0") is not None  # all three paths taken
    monkeypatch.setattr(encoder, "container_meta", counted)
    validate_documents(make_info(A), options)
    assert len(built) == 1


def test_processing_options_that_cannot_work_fail_validation_naming_them() -> None:
    with pytest.raises(LogOptionError, match=r"multiline\.count_lines"):
        validate_documents(make_info(A), {**BASE_OPTIONS, "multiline.type": "count"})
    with pytest.raises(LogOptionError, match="processing options"):
        validate_documents(make_info(A), {**BASE_OPTIONS, "include_lines": ("(unclosed",)})
