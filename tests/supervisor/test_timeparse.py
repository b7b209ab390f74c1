"""Unit tests for supervisor/timeparse.py."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.timeparse import MAX_NANOS, parse_go_time

NS = 1_000_000_000


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", None, ""])
def test_zero_time_and_empty_are_no_bound(value: object) -> None:
    assert parse_go_time(value) == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-11-14T22:13:20.123456789Z", 1700000000123456789),
        ("2023-11-14T22:13:20Z", 1700000000 * NS),
        ("2023-11-15T00:13:20.123456789+02:00", 1700000000123456789),
        ("2023-11-14T17:13:20.123456789-05:00", 1700000000123456789),
        ("2023-11-14T22:43:20+00:30", 1700000000 * NS),
        ("2023-11-14T22:13:20+00:00", 1700000000 * NS),
        ("2024-05-01T14:00:00.5+02:00", 1714564800 * NS + 500_000_000),
        ("1970-01-01T00:00:00.000000001Z", 1),
        ("1970-01-01T00:00:01Z", NS),
        ("2000-02-29T12:00:00Z", 951825600 * NS),
    ],
)
def test_parse(value: str, expected: int) -> None:
    assert parse_go_time(value) == expected


@pytest.mark.parametrize("digits", range(1, 10))
def test_fraction_digits(digits: int) -> None:
    fraction = "123456789"[:digits]
    assert parse_go_time(f"2023-11-14T22:13:20.{fraction}Z") == 1700000000 * NS + int(fraction.ljust(9, "0"))


@pytest.mark.parametrize(
    "value",
    [
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999999Z",
        "1900-01-01T00:00:00Z",
        "1970-01-01T01:00:00+01:00",  # the epoch itself, written in another zone
        "1970-01-01T00:30:00+02:00",
    ],
)
def test_at_or_before_1970_is_no_bound(value: str) -> None:
    assert parse_go_time(value) == 0


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2024-05-01",
        "2024-05-01T14:00:00",  # no zone
        "2024-05-01 14:00:00Z",
        "2024-05-01T14:00:00.Z",
        "2024-05-01T14:00:00.1234567890Z",  # 10 digits
        "2024-05-01T14:00:00+0200",
        "2024-05-01T14:00Z",
        "1700000000",
        "2024-05-01T14:00:00Zjunk",
    ],
)
def test_junk_raises_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        parse_go_time(value)


@pytest.mark.parametrize("value", [5, 1.5, ["2024-05-01T14:00:00Z"], b"2024-05-01T14:00:00Z"])
def test_non_string_raises_value_error(value: object) -> None:
    with pytest.raises(ValueError):
        parse_go_time(value)


@pytest.mark.parametrize(
    "value",
    ["2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T12:60:00Z",
     "2024-05-01T12:00:61Z", "2024-05-01T12:00:00+25:00"],
)
def test_out_of_range_fields_raise_value_error(value: str) -> None:
    """Go's time.Time JSON decoder refuses these; they are not times."""
    with pytest.raises(ValueError):
        parse_go_time(value)


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1)),
    nanos=st.integers(0, 999),
    digits=st.integers(1, 9),
    offset_minutes=st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_property_matches_datetime(moment: dt.datetime, nanos: int, digits: int, offset_minutes: int) -> None:
    zone = dt.timezone(dt.timedelta(minutes=offset_minutes))
    local = moment.replace(tzinfo=zone)
    frac_ns = (moment.microsecond * 1000 + nanos) // 10 ** (9 - digits) * 10 ** (9 - digits)
    fraction = str(frac_ns).rjust(9, "0")[:digits]
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = f"{local:%Y-%m-%dT%H:%M:%S}.{fraction}{sign}{hours:02d}:{minutes:02d}"
    expected = int(local.replace(microsecond=0).timestamp()) * NS + frac_ns
    assert parse_go_time(text) == max(expected, 0)


@pytest.mark.parametrize("value", ["2262-04-11T23:47:16.854775808Z", "9999-12-31T23:59:59.999999999Z",
                                   "9999-12-31T23:59:59-23:59"])
def test_beyond_int64_nanoseconds_is_the_largest_bound(value: str) -> None:
    """Go times reach year 9999; the ReadLogs request carries int64 nanoseconds, which end in 2262."""
    assert parse_go_time(value) == MAX_NANOS == 2**63 - 1
