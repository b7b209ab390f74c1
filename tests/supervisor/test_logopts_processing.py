"""The processing options of supervisor/logopts.py (issue #13): Filebeat's multiline combinations and the regex
lists of include_lines / exclude_lines. Each option's good and bad value is in test_logopts.py's CASES."""

from __future__ import annotations

import pytest

from proto.options import LogOptionError
from supervisor.logopts import parse_log_options, parse_regex_list


@pytest.mark.parametrize(("config", "named"), [
    ({"multiline.type": "count"}, "'multiline.count_lines'"),
    ({"multiline.type": "pattern"}, "'multiline.pattern'"),
    ({"multiline.type": "while_pattern"}, "'multiline.pattern'"),
    ({"multiline.negate": "true"}, "'multiline.negate' needs 'multiline.pattern'"),
    ({"multiline.max_lines": "10"}, "'multiline.max_lines' needs 'multiline.pattern'"),
    ({"multiline.type": "count", "multiline.count_lines": "2", "multiline.pattern": "^a"}, "'multiline.pattern'"),
    ({"multiline.type": "count", "multiline.count_lines": "2", "multiline.negate": "true"}, "'multiline.negate'"),
    ({"multiline.pattern": "^a", "multiline.count_lines": "2"}, "'multiline.count_lines' applies only"),
])
def test_a_multiline_option_that_cannot_act_is_refused_naming_it(config: dict[str, str], named: str) -> None:
    with pytest.raises(LogOptionError, match=named):
        parse_log_options(config)


def test_filebeats_java_recipe_parses_as_written() -> None:
    # The Java stack trace recipe of Filebeat's "Examples of multiline configuration" page, unchanged.
    values = parse_log_options({"multiline.pattern": r"^[[:space:]]+(at|\.{3})[[:space:]]+\b|^Caused by:",
                                "multiline.negate": "false", "multiline.match": "after"}).values
    assert values["multiline.type"] is None  # not given: a given pattern means "pattern" (common.md)
    assert values["multiline.pattern"].startswith("^[[:space:]]+")
    assert (values["multiline.negate"], values["multiline.match"]) == (False, "after")
    assert (values["multiline.max_lines"], values["multiline.timeout"]) == (500, 5.0)


def test_count_needs_no_pattern() -> None:
    values = parse_log_options({"multiline.type": "count", "multiline.count_lines": "4"}).values
    assert (values["multiline.type"], values["multiline.count_lines"]) == ("count", 4)
    assert values["multiline.pattern"] is None


def test_json_options_are_none_until_given() -> None:
    values = parse_log_options({"json.message_key": "log"}).values
    assert values["json.message_key"] == "log"
    assert all(values[name] is None for name in ("json.keys_under_root", "json.overwrite_keys", "json.add_error_key",
                                                 "json.expand_keys", "json.ignore_decoding_error"))


@pytest.mark.parametrize(("text", "items"), [
    ("^ERROR", ("^ERROR",)),
    ("^ERROR, ^WARN ,debug", ("^ERROR", "^WARN", "debug")),  # Filebeat trims each item
    ("a,,b,", ("a", "b")),  # an empty item would match every line: dropped
    (r"^\d{1\,3} ms$", (r"^\d{1,3} ms$",)),  # "\," is a comma inside an item
    (r"a\,b,c", ("a,b", "c")),  # as a regex, "a,b" matches what "a\,b" did
    (r"x\\,y", (r"x\\", "y")),  # an escaped backslash, then a separator
    (r"\.log$,\bdebug\b", (r"\.log$", r"\bdebug\b")),  # other escapes are left alone
])
def test_regex_lists_split_like_filebeat_hints_with_an_escaped_comma(text: str, items: tuple[str, ...]) -> None:
    assert parse_regex_list(text) == items


def test_a_bad_regex_in_a_list_is_refused_naming_the_option_and_the_item() -> None:
    with pytest.raises(LogOptionError, match=r"'include_lines'.*item 2, '\(b'"):
        parse_log_options({"include_lines": "a,(b"})
    with pytest.raises(LogOptionError, match=r"'exclude_lines'.*item 1"):
        parse_log_options({"exclude_lines": r"(?<=x)y"})  # lookbehind: RE2 refuses it
