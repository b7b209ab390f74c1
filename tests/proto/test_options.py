"""What every process may show of a log option (proto/options.py): URL credentials cut, secret options masked."""

from __future__ import annotations

import pytest

from proto.options import SECRET_OPTIONS, redacted_config, shown_value, without_credentials


@pytest.mark.parametrize(("text", "expected"), [
    ("http://u:pw@proxy:3128", "http://***@proxy:3128"),
    ("ftp://u:p@ss/w@proxy:21/x", "ftp://***@proxy:21/x"),  # an unencoded "@" or "/" in the password
    ("http://a:1@h1:9200,https://b:2@h2", "http://***@h1:9200,https://***@h2"),
    ("http://proxy:3128", "http://proxy:3128"),
    ("user@example.com", "user@example.com"),
])
def test_without_credentials(text: str, expected: str) -> None:
    assert without_credentials(text) == expected


def test_redacted_config_masks_every_secret_option() -> None:
    config = {name: "s3cret" for name in SECRET_OPTIONS} | {"proxy_url": "http://u:s3cret@p:1", "max-size": "1m"}
    redacted = redacted_config(config)
    assert "s3cret" not in str(redacted)
    assert redacted["max-size"] == "1m" and redacted["proxy_url"] == "http://***@p:1"


@pytest.mark.parametrize(("value", "expected"), [
    ("user:pw@proxy:3128", "***@proxy:3128"),  # no scheme: the user-info is cut all the same
    ("https://h:9200/?api_key=abc#frag", "https://h:9200/"),  # a URL's query and fragment are dropped
    ("a,b@c", "a,***@c"),  # each comma-separated item on its own
])
def test_shown_value_cuts_what_may_hold_a_secret(value: str, expected: str) -> None:
    assert shown_value(value) == expected


def test_shown_value_cuts_after_redacting() -> None:
    # Cutting first could drop the "@" and leave the password on show.
    assert shown_value("http://user:" + "p" * 300 + "@host", limit=20) == "http://***@host"
