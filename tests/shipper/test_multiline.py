"""Multiline joining with Filebeat's semantics, on real traces and with Filebeat's documented recipes as written
(https://www.elastic.co/guide/en/beats/filebeat/current/multiline-examples.html)."""

from __future__ import annotations

from typing import Any

import pytest

from shipper.multiline import Event, Joiner, Line, MultilineConfig

JAVA = """\
Exception in thread "main" java.lang.IllegalStateException: A book has a null property
\tat com.example.myproject.Author.getBookIds(Author.java:38)
\tat com.example.myproject.Bootstrap.main(Bootstrap.java:14)
Caused by: java.lang.NullPointerException
\tat com.example.myproject.Book.getId(Book.java:22)
\tat com.example.myproject.Author.getBookIds(Author.java:35)
\t... 1 more
2026-12-06 14:00:01 INFO next request served"""

PYTHON = """\
Traceback (most recent call last):
  File "/app/server.py", line 42, in handle
    result = compute(payload)
  File "/app/server.py", line 17, in compute
    return payload["value"] / payload["count"]
ZeroDivisionError: division by zero
INFO:root:next request served"""

GO = """\
panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.lookup(...)
\t/app/main.go:12
main.main()
\t/app/main.go:20 +0x1d
exit status 2"""

NODE = """\
/app/index.js:3
    throw new Error('Something unexpected has occurred.');
    ^

Error: Something unexpected has occurred.
    at main (/app/index.js:3:11)
    at Object.<anonymous> (/app/index.js:7:1)
    at Module._compile (node:internal/modules/cjs/loader:1256:14)
Server listening on 8080"""


def _config(**options: Any) -> MultilineConfig:
    config = MultilineConfig.from_options({f"multiline.{k}": v for k, v in options.items()})
    assert config is not None
    return config


def _join(config: MultilineConfig, text: str) -> list[Event]:
    joiner = Joiner(config)
    events: list[Event] = []
    for n, line in enumerate(text.split("\n")):
        events += joiner.add(Line((0, n), (0, n + 1), n, "stdout", line.encode()), n)
    last = joiner.flush()
    return events + ([last] if last else [])


def _texts(events: list[Event]) -> list[str]:
    return [e.text.decode() for e in events]


def test_java_recipe_as_written_joins_the_trace_with_caused_by_and_more() -> None:
    config = _config(pattern=r"^[[:space:]]+(at|\.{3})[[:space:]]+\b|^Caused by:", negate=False, match="after")
    events = _join(config, JAVA)
    assert _texts(events) == [JAVA.rsplit("\n", 1)[0], "2026-12-06 14:00:01 INFO next request served"]
    assert [e.multiline for e in events] == [True, False]
    assert events[0].start == (0, 0) and events[0].end == (0, 7)


def test_python_traceback_with_the_recipe_for_lines_that_do_not_start_a_log_entry() -> None:
    # Filebeat's "lines not starting with a timestamp/level belong to the previous" recipe, for Python:
    # a new event starts at "Traceback" or at a logging prefix; everything else joins it.
    config = _config(pattern=r"^(Traceback|[A-Z]+:)", negate=True, match="after")
    events = _join(config, PYTHON)
    assert _texts(events) == [PYTHON.rsplit("\n", 1)[0], "INFO:root:next request served"]


def test_go_panic_with_goroutines_and_blank_lines() -> None:
    # Every line that does not start a new panic or an "exit status" joins: blank lines included.
    config = _config(pattern=r"^(panic:|exit status)", negate=True, match="after")
    events = _join(config, GO)
    assert _texts(events) == [GO.rsplit("\n", 1)[0], "exit status 2"]
    assert events[0].lines == 7


def test_node_error_with_the_flush_pattern_ending_the_stack() -> None:
    # A node crash starts with "<file>:<line>"; the stack's last frame (node:internal) ends it.
    config = _config(pattern=r"^/.*:[0-9]+$", negate=True, match="after",
                     flush_pattern=r"node:internal")
    events = _join(config, NODE)
    assert _texts(events) == [NODE.rsplit("\n", 1)[0], "Server listening on 8080"]


def test_match_before_joins_lines_ending_with_a_backslash_to_the_next() -> None:
    config = _config(pattern=r"\\$", negate=False, match="before")
    events = _join(config, "one \\\ntwo \\\nthree\nfour")
    assert _texts(events) == ["one \\\ntwo \\\nthree", "four"]


def test_flush_pattern_ends_events_between_start_and_end_markers() -> None:
    # Filebeat's "application events" example: Start new event / End event.
    config = _config(pattern=r"Start new event", negate=True, match="after", flush_pattern=r"End event")
    text = "[2015-08-24 11:49:14,389] Start new event\na\nb\n[2015-08-24 11:49:14,395] End event\nStart new event\nc"
    assert _texts(_join(config, text)) == [
        "[2015-08-24 11:49:14,389] Start new event\na\nb\n[2015-08-24 11:49:14,395] End event",
        "Start new event\nc"]


def test_count_makes_events_of_count_lines() -> None:
    config = _config(type="count", count_lines=3)
    assert _texts(_join(config, "1\n2\n3\n4\n5\n6\n7")) == ["1\n2\n3", "4\n5\n6", "7"]


def test_while_pattern_joins_consecutive_matches_and_leaves_others_alone() -> None:
    config = _config(type="while_pattern", pattern=r"^ ")
    assert _texts(_join(config, "a\n b\n c\nd\ne\n f")) == ["a", " b\n c", "d", "e", " f"]
    negated = _config(type="while_pattern", pattern=r"^End", negate=True)
    assert _texts(_join(negated, "x\ny\nEnd\nz")) == ["x\ny", "End", "z"]


def test_max_lines_drops_later_lines_of_the_event_and_flags_it_truncated() -> None:
    config = _config(pattern=r"^ ", max_lines=3)
    events = _join(config, "head\n 1\n 2\n 3\n 4\nnext")
    assert _texts(events) == ["head\n 1\n 2", "next"]
    first = events[0]
    # Dropped lines still belong to the event: it ends after them (Filebeat keeps matching).
    assert first.truncated and first.multiline and first.end == (0, 5) and first.processed == 5


def test_the_byte_cap_cuts_the_event_and_flags_it_truncated() -> None:
    config = MultilineConfig("pattern", _config(pattern="^ ").pattern, False, True, None, 0, 500, 0, max_bytes=10)
    events = _join(config, "head\n 12345678\n more")
    assert _texts(events) == ["head\n 1234"] and events[0].truncated


def test_an_event_of_one_line_is_not_multiline() -> None:
    events = _join(_config(pattern="^ "), "alone")
    assert not events[0].multiline and not events[0].truncated


@pytest.mark.parametrize("options", [{"type": "bogus", "pattern": "x"}, {"type": "count"},
                                     {"type": "while_pattern"}])
def test_a_config_that_cannot_work_is_refused_naming_the_option(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="multiline"):
        MultilineConfig.from_options({f"multiline.{k}": v for k, v in options.items()})


def test_multiline_is_off_without_type_and_pattern() -> None:
    assert MultilineConfig.from_options({"multiline.negate": True}) is None
