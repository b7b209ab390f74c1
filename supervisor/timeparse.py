"""Go ``time.Time`` JSON (RFC 3339 with up to 9 fraction digits, any offset) to Unix nanoseconds."""

from __future__ import annotations

import calendar
import datetime
import re

MAX_NANOS = 2**63 - 1
_GO_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)",
)


def parse_go_time(value: object) -> int:
    """Unix nanoseconds; 0 for Go's zero time and anything at or before 1970 ("no bound"), at most MAX_NANOS."""
    if value is None or value == "":
        return 0
    if not isinstance(value, str):
        raise ValueError("a time must be an RFC 3339 string")
    m = _GO_TIME.fullmatch(value.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {value[:60]!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    try:
        datetime.datetime(year, month, day, hour, minute, second)  # only to refuse Feb 30, 24:00, 12:60...
    except ValueError as exc:
        raise ValueError(f"not a valid time: {value[:60]!r} ({exc})") from None
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone != "Z":
        zone_hours, zone_minutes = int(zone[1:3]), int(zone[4:6])
        if zone_hours > 23 or zone_minutes > 59:
            raise ValueError(f"not a valid time zone offset: {zone!r}")
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (zone_hours * 3600 + zone_minutes * 60)
    nanos = int((m.group(7) or "").ljust(9, "0") or 0)
    total = seconds * 1_000_000_000 + nanos
    # Nanoseconds in an int64 end in 2262; a later time (Go's reach to year 9999) is as good as "never".
    return min(total, MAX_NANOS) if total > 0 else 0
