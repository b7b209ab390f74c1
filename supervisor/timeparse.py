"""Go ``time.Time`` JSON (RFC 3339 with up to 9 fraction digits, any offset) to Unix nanoseconds."""

from __future__ import annotations

import calendar
import re

_GO_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)",
)


def parse_go_time(value: object) -> int:
    """Unix nanoseconds; 0 for Go's zero time and anything at or before 1970 ("no bound")."""
    if value is None or value == "":
        return 0
    if not isinstance(value, str):
        raise ValueError("a time must be an RFC 3339 string")
    m = _GO_TIME.fullmatch(value.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {value[:60]!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    nanos = int((m.group(7) or "").ljust(9, "0") or 0)
    total = seconds * 1_000_000_000 + nanos
    return total if total > 0 else 0
