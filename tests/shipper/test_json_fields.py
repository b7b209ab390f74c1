"""shipper/json_fields.py: libbeat's jsontransform (WriteJSONKeys, expandFields, DeepUpdate) and parseTimestamp.
The options' effect on whole documents is tested through apply_json in test_json_lines.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shipper.json_fields import ExpandConflict, deep_update, expanded, parse_timestamp, write_keys


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000000000Z"),
    ("2024-01-02T03:04:05.123456789Z", "2024-01-02T03:04:05.123456789Z"),
    ("2024-12-31T23:30:00-01:00", "2025-01-01T00:30:00.000000000Z"),
    ("2024-01-02T03:04:05.999+0000", "2024-01-02T03:04:05.999000000Z"),
    ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00.000000000Z"),
])
def test_parse_timestamp_takes_rfc3339_and_libbeats_iso8601(value: str, expected: str) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize("value", [
    "2023-02-29T00:00:00Z", "2024-01-02T24:00:00Z", "2024-01-02T03:04:05", "2024-01-02T03:04:05+01:60",
    "2024-01-02T03:04:05.1234567891Z", "2024-01-02T03:04:05.12+0100", "2024-01-02", "1714558830", "",
    " 2024-01-02T03:04:05Z",
])
def test_parse_timestamp_refuses_what_go_refuses(value: str) -> None:
    assert parse_timestamp(value) is None


def test_deep_update_merges_objects_and_copies_the_ones_it_changes() -> None:
    shared = {"id": "c1"}
    target: dict[str, Any] = {"container": shared, "stream": "stdout"}
    deep_update(target, {"container": {"id": "x", "pod": "p"}, "stream": "json", "new": 1}, overwrite=False)
    assert target == {"container": {"id": "c1", "pod": "p"}, "stream": "stdout", "new": 1}
    assert shared == {"id": "c1"}  # copied before the merge
    deep_update(target, {"container": {"id": "x"}, "stream": {"a": 1}}, overwrite=True)
    assert target == {"container": {"id": "x", "pod": "p"}, "stream": {"a": 1}, "new": 1}


def test_write_keys_without_overwrite_drops_timestamp_and_metadata() -> None:
    document: dict[str, Any] = {"@timestamp": "t0"}
    errors: list[str] = []
    write_keys(document, {"@timestamp": "2024-01-02T03:04:05Z", "@metadata": {"a": 1}, "k": 1}, False, errors, None)
    assert document == {"@timestamp": "t0", "k": 1} and errors == []


def test_expanded_is_filebeats_expand_fields_without_changing_its_input() -> None:
    given = {"a.b": 1, "a": {"c.d": 2}, "x": [{"y.z": 3}], "plain": "v"}
    before = copy.deepcopy(given)
    assert expanded(given) == {"a": {"b": 1, "c": {"d": 2}}, "x": [{"y.z": 3}], "plain": "v"}  # not into arrays
    assert given == before


@pytest.mark.parametrize(("obj", "message"), [
    ({"a": "s", "a.b": 1}, 'cannot expand "a.b": found conflicting key'),
    ({"a.b": {"c": 1}, "a": {"b": {"c": 2}}}, 'cannot expand "a": cannot merge "c"'),
    ({"a.b": 1, "a.b.c": 2}, 'cannot expand "a.b.c": found conflicting key'),
])
def test_expanded_conflicts_raise_with_filebeats_wording(obj: dict[str, Any], message: str) -> None:
    before = copy.deepcopy(obj)
    with pytest.raises(ExpandConflict) as raised:
        expanded(obj)
    assert str(raised.value).startswith(message)
    assert obj == before
