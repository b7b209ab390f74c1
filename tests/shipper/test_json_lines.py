"""shipper/json_lines.py: Filebeat's json.* semantics, and the hard inputs (deep, huge, big numbers, bad bytes)."""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.json_lines import (
    MAX_DEPTH,
    DecodedLine,
    JsonConfig,
    JsonProblems,
    apply_json,
    decode_line,
    dumps,
    join_fields,
)

CID = "0123456789abcdef" * 4


def config(**given: Any) -> JsonConfig:
    given = given or {"keys_under_root": False}  # one option given (as false) turns decoding on
    made = JsonConfig.from_options({f"json.{name}": value for name, value in given.items()})
    assert made is not None
    return made


def plugin_doc() -> dict[str, Any]:
    """The plugin's own fields of a document, as DocumentBuilder.document makes them (minus message)."""
    return {"@timestamp": "2024-05-01T10:20:30.123456789Z", "stream": "stdout",
            "container": {"id": CID, "name": "web-1", "image": {"name": "nginx"}},
            "host": {"name": "docker-host"}, "agent": {"type": "elastic-logging-plugin"}, "tags": ["prod"],
            "log": {"flags": ["multiline"]}}


def ship(line: bytes, cfg: JsonConfig, problems: list[str] | None = None) -> dict[str, Any]:
    """A line's document, the way the shipper goes: decode, apply, dumps; read back as the receiver would."""
    decoded = decode_line(line, cfg)
    text = None if decoded.own_event else decoded.text.decode("utf-8", "replace")
    body = dumps(apply_json(plugin_doc(), text, decoded.fields, decoded.error, cfg, problems))
    parsed: dict[str, Any] = json.loads(body)  # stdlib: exact integers of any size
    return parsed


# ---------------------------------------------------------------------------- options


def test_decoding_is_off_unless_a_json_option_is_given() -> None:
    assert JsonConfig.from_options({"hosts": "es"}) is None
    assert JsonConfig.from_options({"json.keys_under_root": None, "json.message_key": None}) is None
    # Any given option turns it on, even false; the others take Filebeat's defaults.
    assert JsonConfig.from_options({"json.add_error_key": False}) == JsonConfig(
        keys_under_root=False, overwrite_keys=False, add_error_key=False, message_key=None, expand_keys=False,
        ignore_decoding_error=False)
    assert config(message_key="msg").message_key == "msg"


# ---------------------------------------------------------------------------- where the keys go


def test_keys_go_under_json_by_default_and_the_message_key_is_the_message() -> None:
    doc = ship(b'{"msg": "started", "level": "info", "container": "mine"}\n', config(message_key="msg"))
    assert doc["json"] == {"msg": "started", "level": "info", "container": "mine"}
    assert doc["message"] == "started"
    assert doc["container"]["id"] == CID


def test_without_a_message_key_a_decoded_line_has_no_message() -> None:
    decoded = decode_line(b'{"a": 1}', config(keys_under_root=False))
    assert decoded == DecodedLine(b"", {"a": 1}, None, own_event=True)
    doc = ship(b'{"a": 1}', config(keys_under_root=False))
    assert "message" not in doc and doc["json"] == {"a": 1}


def test_keys_under_root_without_overwrite_the_plugin_fields_win_and_objects_merge() -> None:
    line = (b'{"message": "hi", "@timestamp": "2001-01-01T00:00:00Z", "stream": "mine", "tags": ["x"],'
            b' "container": {"id": "forged", "pod": "p1"}, "log": {"level": "warn"}, "@metadata": {"a": 1},'
            b' "user": {"id": 7}}')
    doc = ship(line, config(keys_under_root=True, message_key="message"))
    assert doc["@timestamp"] == "2024-05-01T10:20:30.123456789Z"
    assert doc["stream"] == "stdout" and doc["tags"] == ["prod"]
    assert doc["container"]["id"] == CID and doc["container"]["pod"] == "p1"
    assert doc["log"] == {"flags": ["multiline"], "level": "warn"}
    assert doc["user"] == {"id": 7} and doc["message"] == "hi"
    assert "@metadata" not in doc and "json" not in doc


def test_overwrite_keys_replaces_the_plugin_fields() -> None:
    line = b'{"stream": "mine", "container": {"id": "forged"}, "tags": "t", "@metadata": {"a": 1}, "type": "x"}'
    doc = ship(line, config(keys_under_root=True, overwrite_keys=True))
    assert doc["stream"] == "mine" and doc["tags"] == "t" and doc["type"] == "x"
    assert doc["container"] == {"id": "forged", "name": "web-1", "image": {"name": "nginx"}}  # a deep update
    assert "@metadata" not in doc


@pytest.mark.parametrize(("given_ts", "expected"), [
    ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000000000Z"),
    ("2024-01-02T03:04:05.5+01:00", "2024-01-02T02:04:05.500000000Z"),
    ("2024-01-02T23:59:59.123456789-02:30", "2024-01-03T02:29:59.123456789Z"),
    ("2024-01-02T03:04:05.123+0100", "2024-01-02T02:04:05.123000000Z"),  # libbeat's iso8601 layout
])
def test_overwrite_keys_takes_an_rfc3339_timestamp(given_ts: str, expected: str) -> None:
    doc = ship(orjson.dumps({"@timestamp": given_ts}), config(keys_under_root=True, overwrite_keys=True))
    assert doc["@timestamp"] == expected
    assert "error" not in doc


@pytest.mark.parametrize(("value", "error"), [
    (17, "@timestamp not overwritten (not string)"),
    ("yesterday", "@timestamp not overwritten (parse error on yesterday)"),
    ("2024-02-30T03:04:05Z", "@timestamp not overwritten (parse error on 2024-02-30T03:04:05Z)"),
    ("2024-01-02 03:04:05Z", "@timestamp not overwritten (parse error on 2024-01-02 03:04:05Z)"),
])
def test_a_timestamp_that_does_not_parse_is_kept_out_with_an_error(value: Any, error: str) -> None:
    problems: list[str] = []
    doc = ship(orjson.dumps({"@timestamp": value, "a": 1}),
               config(keys_under_root=True, overwrite_keys=True, add_error_key=True), problems)
    assert doc["@timestamp"] == "2024-05-01T10:20:30.123456789Z" and doc["a"] == 1
    assert doc["error"] == {"message": error, "type": "json"}
    assert problems == ["@timestamp not overwritten"]


@pytest.mark.parametrize("value", ["", "_doc", 5])
def test_overwrite_keys_refuses_a_bad_type(value: Any) -> None:
    doc = ship(orjson.dumps({"type": value}), config(keys_under_root=True, overwrite_keys=True, add_error_key=True))
    assert "type" not in doc and doc["error"]["message"].startswith("type not overwritten")


# ---------------------------------------------------------------------------- message key and errors


def test_a_line_that_is_not_json_ships_as_a_plain_message() -> None:
    assert ship(b"GET / 200\n", config(keys_under_root=True))["message"] == "GET / 200"
    doc = ship(b"GET / 200\n", config(keys_under_root=True, add_error_key=True))
    assert doc["message"] == "GET / 200"
    assert doc["error"]["type"] == "json"
    assert doc["error"]["message"].startswith("Error decoding JSON: ")


def test_without_add_error_key_no_error_is_written() -> None:
    doc = ship(b'{"a": 1}', config(message_key="msg"))
    assert "error" not in doc and doc["json"] == {"a": 1}


@pytest.mark.parametrize(("line", "error"), [
    (b'{"a": 1}', "Key 'msg' not found"),
    (b'{"msg": 5}', "Value of key 'msg' is not a string"),
    (b'{"msg": null}', "Value of key 'msg' is not a string"),
])
def test_a_missing_or_non_string_message_key_makes_its_own_event(line: bytes, error: str) -> None:
    decoded = decode_line(line, config(message_key="msg"))
    assert decoded.own_event and decoded.error == error and decoded.text == b""
    doc = ship(line, config(message_key="msg", add_error_key=True))
    assert doc["json"] == orjson.loads(line)  # the JSON's own value is kept, not replaced by ""
    assert doc["error"] == {"message": error, "type": "json"}
    assert "message" not in doc


def test_an_empty_message_key_value_is_text() -> None:
    decoded = decode_line(b'{"msg": ""}', config(message_key="msg"))
    assert decoded.text == b"" and not decoded.own_event and decoded.error is None


def test_the_joined_text_replaces_the_message_key() -> None:
    cfg = config(message_key="msg", keys_under_root=True)
    first = decode_line(b'{"msg": "Traceback:", "level": "error", "n": 1}', cfg)
    later = decode_line(b'{"msg": "  File x", "n": 2}', cfg)
    fields = join_fields(first.fields, later.fields)
    # Filebeat's multiline updates {"json": object} shallowly: the last JSON line's object wins.
    assert fields == {"msg": "  File x", "n": 2}
    assert join_fields(first.fields, None) is first.fields
    doc = apply_json(plugin_doc(), "Traceback:\n  File x", fields, None, cfg)
    assert doc["msg"] == doc["message"] == "Traceback:\n  File x"


def test_an_error_key_in_the_json_is_kept_unless_there_is_an_error_to_report() -> None:
    assert ship(b'{"error": "refused"}', config(keys_under_root=True, add_error_key=True))["error"] == "refused"
    doc = ship(b'{"error": {"code": 3}}', config(keys_under_root=True, add_error_key=True, message_key="m"))
    assert doc["error"] == {"code": 3, "message": "Key 'm' not found", "type": "json"}


# ---------------------------------------------------------------------------- expand_keys


def test_expand_keys_makes_dotted_keys_objects_and_merges_them() -> None:
    line = b'{"log.level": "info", "log.origin": {"file.name": "a.py"}, "http": {"request.method": "GET"}}'
    doc = ship(line, config(keys_under_root=True, expand_keys=True))
    assert doc["log"] == {"flags": ["multiline"], "level": "info", "origin": {"file": {"name": "a.py"}}}
    assert doc["http"] == {"request": {"method": "GET"}}
    assert ship(line, config(expand_keys=True))["json"]["log"]["origin"] == {"file": {"name": "a.py"}}
    assert ship(b'{"a": {"x": 1}, "a.y": 2}', config(expand_keys=True))["json"] == {"a": {"x": 1, "y": 2}}


@pytest.mark.parametrize(("line", "error"), [
    (b'{"a": 1, "a.b": 2}', 'cannot expand "a.b": found conflicting key'),
    (b'{"a.b": 2, "a": 1}', 'cannot expand "a": found existing (a number) value'),
    (b'{"x": {"a": 1, "a.b": 2}}', 'error expanding "x": cannot expand "a.b": found conflicting key'),
])
def test_an_expand_conflict_keeps_the_object_as_text_with_filebeats_error(line: bytes, error: str) -> None:
    problems: list[str] = []
    doc = ship(line, config(keys_under_root=True, expand_keys=True, add_error_key=True), problems)
    assert doc["error"] == {"message": error, "type": "json"}
    assert orjson.loads(doc["message"]) == orjson.loads(line)
    assert "a" not in doc and "x" not in doc
    assert problems == ["expand_keys conflict"]


# ---------------------------------------------------------------------------- hard inputs


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def test_deep_nesting_within_the_limit_decodes() -> None:
    doc = ship(nested(MAX_DEPTH), config())
    assert "json" in doc


@pytest.mark.parametrize(("depth", "exact"), [(MAX_DEPTH + 1, False), (1100, False), (100_000, False),
                                              (MAX_DEPTH + 1, True), (100_000, True)])
def test_deeper_nesting_ships_as_text(depth: int, exact: bool) -> None:
    line = nested(depth)
    if exact:  # a long digit run sends the line to the stdlib decoder (its own recursion limit)
        line = b'{"n": 12345678901234567890123, "x": ' + line + b"}"
    decoded = decode_line(line, config())
    assert decoded.fields is None and decoded.error is not None
    doc = ship(line, config(add_error_key=True))
    assert doc["message"] == line.decode() and doc["error"]["type"] == "json"
    assert doc["error"]["message"].startswith("Error decoding JSON: ")


def test_many_brackets_in_strings_are_not_nesting() -> None:
    line = orjson.dumps({"msg": "[{" * 5000})
    assert decode_line(line, config(message_key="msg")).text == b"[{" * 5000


def test_a_huge_object_decodes_whole_and_a_cut_one_ships_as_text() -> None:
    big = {f"k{i}": "v" * 10 for i in range(40_000)}  # about 800 KiB: below the shipper's 1 MiB line cap
    line = orjson.dumps(big)
    assert decode_line(line, config()).fields == big
    # A longer line is cut at feed.MAX_MESSAGE: what is left is not JSON, so it ships as text (truncated flag set
    # by the feed).
    doc = ship(line[: len(line) // 2], config(add_error_key=True))
    assert doc["message"] == line[: len(line) // 2].decode() and doc["error"]["type"] == "json"


@pytest.mark.parametrize("number", [2**64, 2**64 - 1, -(2**63) - 1, 10**40, -(10**40)])
def test_integers_beyond_64_bits_stay_exact(number: int) -> None:
    line = b'{"id": %d, "ok": 1.5, "t": "x"}' % number
    assert decode_line(line, config()).fields == {"id": number, "ok": 1.5, "t": "x"}
    doc = ship(line, config(keys_under_root=True))
    assert doc["id"] == number and isinstance(doc["id"], int)
    assert b'"id":%d' % number in dumps(apply_json({}, None, {"id": number}, None, config(keys_under_root=True)))


def test_long_digit_runs_in_strings_take_the_exact_decoder_with_the_same_result() -> None:
    line = b'{"trace": "12345678901234567890123", "n": 1.25, "u": "caf\\u00e9 \xc3\xa9"}'
    assert decode_line(line, config()).fields == {"trace": "12345678901234567890123", "n": 1.25, "u": "café é"}


@pytest.mark.parametrize("line", [
    b'{"a": NaN}', b'{"a": Infinity, "b": 12345678901234567890}', b'{"a": 1e400}',
    b'{"a": 1e400, "b": 1234567890123456789012}',
])
def test_numbers_json_does_not_have_are_decoding_errors(line: bytes) -> None:
    assert decode_line(line, config()).fields is None


def test_invalid_utf8_is_replaced_before_decoding() -> None:
    decoded = decode_line(b'{"msg": "caf\xe9 \xff ok"}', config(message_key="msg"))
    assert decoded.fields == {"msg": "caf\ufffd \ufffd ok"}
    assert decoded.text == "caf\ufffd \ufffd ok".encode()


@pytest.mark.parametrize(("line", "expected"), [
    (b'{"m": "\\ud800 x"}', "\ufffd x"),
    (b'{"m": "\\udc00\\ud83d\\ude00", "n": 12345678901234567890123}', "\ufffd\U0001f600"),  # the exact decoder
])
def test_lone_surrogates_become_replacement_characters(line: bytes, expected: str) -> None:
    doc = ship(line, config(keys_under_root=True, add_error_key=True))
    assert doc["m"] == expected and "error" not in doc


@pytest.mark.parametrize(("line", "kind"), [
    (b"17", "a number"), (b'"text"', "a string"), (b"[1, 2]", "an array"), (b"null", "null"), (b"true", "a boolean"),
])
def test_a_scalar_or_array_line_is_a_decoding_error(line: bytes, kind: str) -> None:
    decoded = decode_line(line, config())
    assert decoded.fields is None and decoded.error == f"Error decoding JSON: not a JSON object but {kind}"
    assert ship(line, config())["message"] == line.decode()


def test_duplicate_keys_keep_the_last_value_as_go_does() -> None:
    assert decode_line(b'{"a": 1, "a": 2}', config()).fields == {"a": 2}
    assert decode_line(b'{"a": 1, "a": 12345678901234567890123}', config()).fields == {"a": 12345678901234567890123}


@pytest.mark.parametrize("line", [b"", b"\n", b"   \n", b'{"a": 1} trailing', b'{"a": 1}{"b": 2}'])
def test_empty_lines_and_trailing_content_are_decoding_errors_and_still_ship(line: bytes) -> None:
    doc = ship(line, config(add_error_key=True))
    assert doc["message"] == line.removesuffix(b"\n").decode()
    assert doc["error"]["type"] == "json"


def test_surrounding_whitespace_and_a_carriage_return_are_fine() -> None:
    assert decode_line(b'  {"a": 1} \r\n', config()).fields == {"a": 1}


# ---------------------------------------------------------------------------- properties

ALL_FLAGS = st.builds(
    JsonConfig, keys_under_root=st.booleans(), overwrite_keys=st.booleans(), add_error_key=st.booleans(),
    message_key=st.sampled_from([None, "message", "msg", "a.b"]), expand_keys=st.booleans(),
    ignore_decoding_error=st.booleans())


@settings(max_examples=300, deadline=None)
@given(line=st.binary(max_size=200), cfg=ALL_FLAGS)
def test_any_bytes_give_a_valid_document(line: bytes, cfg: JsonConfig) -> None:
    doc = ship(line, cfg)  # dumps gave JSON that parses
    if decode_line(line, cfg).fields is None:  # not JSON: the line is the message, nothing lost
        assert doc["message"] == line.removesuffix(b"\n").decode("utf-8", "replace")


JSON_KEYS = st.sampled_from(["a", "b", "a.b", "message", "msg", "@timestamp", "container", "tags", "type", "log"])
JSON_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(JSON_KEYS | st.text(max_size=5), children, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(obj=st.dictionaries(JSON_KEYS | st.text(max_size=5), JSON_VALUES, max_size=6), cfg=ALL_FLAGS,
       ascii_only=st.booleans())
def test_any_json_object_decodes_to_itself_and_ships(obj: dict[str, Any], cfg: JsonConfig, ascii_only: bool) -> None:
    line = json.dumps(obj, ensure_ascii=ascii_only).encode()
    assert decode_line(line, cfg).fields == obj  # integers of any size exact, escapes or not
    ship(line, cfg)


# ---------------------------------------------------------------------------- logging


def test_problems_are_logged_once_per_container_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="elp.shipper")
    cfg = config(keys_under_root=True)
    problems = JsonProblems(CID, cfg)
    for line in [b"not json secret-token", b"also not", b'{"a": 1}', b"[1]"]:
        problems.note_line(decode_line(line, cfg))
    problems.note_problems(["expand_keys conflict", "expand_keys conflict", "@timestamp not overwritten"])
    assert problems.decoding_errors == 3 and problems.other == 3
    messages = [r.getMessage() for r in caplog.records if r.name == "elp.shipper"]
    assert len(messages) == 3
    assert CID[:12] in messages[0] and "not a JSON object" in messages[0]
    assert "secret-token" not in caplog.text  # the log never holds line content


def test_ignore_decoding_error_silences_the_log_not_the_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="elp.shipper")
    cfg = config(ignore_decoding_error=True)
    problems = JsonProblems(CID, cfg)
    problems.note_line(decode_line(b"plain", cfg))
    assert problems.decoding_errors == 1
    assert not [r for r in caplog.records if r.name == "elp.shipper"]


# ---------------------------------------------------------------------------- sharing


@pytest.mark.parametrize("cfg", [
    config(keys_under_root=True), config(keys_under_root=True, overwrite_keys=True, add_error_key=True),
    config(keys_under_root=False, add_error_key=True)])
def test_apply_json_never_changes_the_nested_objects_it_is_given(cfg: JsonConfig) -> None:
    constant = plugin_doc()
    constant["json"] = {"from": "a custom field"}
    constant["error"] = {"code": "custom"}
    before = json.dumps(constant)
    line = b'{"container": {"pod": "p"}, "log": {"level": "x"}, "json": {"k": 1}, "@timestamp": 5, "error": {"a": 2}}'
    decoded = decode_line(line, cfg)
    doc = apply_json({**constant}, None, decoded.fields, "problem", cfg)  # a shallow copy, as a builder would pass
    assert json.dumps(constant) == before  # the shared constant part is untouched
    assert doc["container"]["id"] == CID
    assert doc["error"]["code"] == "custom"
    assert doc["error"].get("type") == ("json" if cfg.add_error_key else None)
