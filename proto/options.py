"""What every process needs to know about log options without parsing them: the error that refuses one, which
ones are secrets, how a value may be shown (credentials cut), and how a user's regex is compiled (RE2).

Here rather than in ``supervisor.logopts`` (which declares and parses the options) because the shipper and the
local store use these too, and ``proto`` is the one package they all may import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import re2


class LogOptionError(ValueError):
    """A log option that StartLogging must refuse; the message names the option and is shown by docker run."""


# The options whose values are never echoed, logged or written (supervisor.logopts marks them as such from here).
SECRET_OPTIONS = frozenset({"password", "api_key", "cloud_auth", "ssl.key"})

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported once, by us, naming its option


def user_regex(pattern: str) -> Any:
    """Compile a regex a user gave, with RE2 (linear time: no pattern can freeze the loop it runs on, unlike
    ``(a+)+$`` in Python's ``re``). Every user regex goes through here. Raises ``re2.error``."""
    return re2.compile(pattern, options=_RE2_OPTIONS)


# The user-info part of every URL in a text (greedy to the token's last "@": a password may hold one unencoded).
_URL_CREDENTIALS = re.compile(r"(?<=://)[^\s,]*@")


def without_credentials(text: str) -> str:
    """``http://user:password@proxy:3128`` -> ``http://***@proxy:3128``, for every URL in ``text``."""
    return _URL_CREDENTIALS.sub("***@", text)


def shown_value(value: str, limit: int = 200) -> str:
    """A non-secret option value as an error or a file may show it: the user-info of each comma-separated item
    cut, with or without a scheme (``user:pw@proxy:3128`` -> ``***@proxy:3128``), a URL's query and fragment
    dropped (``?api_key=...``), then cut at ``limit`` characters (after: a cut must not strip an "@" and leave a
    password)."""
    items = []
    for item in value.split(","):
        head, at, rest = item.rpartition("@")
        if at:
            scheme, sep, _ = head.partition("://")
            item = f"{scheme}{sep}***@{rest}" if sep and "/" not in scheme else f"***@{rest}"
        if "://" in item:
            item = item.split("?", 1)[0].split("#", 1)[0]
        items.append(item)
    return ",".join(items)[:limit]


def redacted_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Log-opts as they may be written where secrets must not go: secret options masked, URL credentials cut."""
    return {name: "***" if name in SECRET_OPTIONS else _redacted(value) for name, value in config.items()}


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return shown_value(value, len(value))
    if isinstance(value, tuple | list):  # a parsed list option (hosts)
        return type(value)(_redacted(item) for item in value)
    return value
