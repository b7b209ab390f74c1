"""Document ids: deterministic per (container, position), distinct otherwise, and short."""

from __future__ import annotations

import re

from shipper.feed import doc_id, id_prefix

A, B = "a" * 64, "b" * 64


def test_the_same_line_gets_the_same_id_in_every_process() -> None:
    assert doc_id(id_prefix(A), (3, 1234)) == doc_id(id_prefix(A), (3, 1234))


def test_positions_and_containers_get_distinct_ids() -> None:
    ids = {doc_id(id_prefix(c), (g, o)) for c in (A, B) for g in (0, 1, 16, 17) for o in (0, 1, 0x10, 0x11, 2**40)}
    assert len(ids) == 2 * 4 * 5


def test_ids_are_short_and_url_safe() -> None:
    ident = doc_id(id_prefix(A), (2**31, 2**62))
    assert len(ident) <= 64 and re.fullmatch(r"[A-Za-z0-9_\-.]+", ident)
