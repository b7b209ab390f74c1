"""Dead letters are bounded: a refused dead letter is dropped (counted), never wrapped again, and its original is
finished, so the container's acknowledgement moves on; ``queued_bytes`` counts dead letters in and out."""

from __future__ import annotations

from tests.es_standin import EsStandin
from tests.shipper.bulk_harness import all_finished, make_docs, ship


def test_a_stored_dead_letter_finishes_its_original_and_queued_bytes_return_to_zero(es: EsStandin) -> None:
    es.item_error(lambda d: d.get("message") == "line 3", status=400, error_type="document_parsing_exception")
    run = ship(es, make_docs(10), all_finished(10), dead_letter_index="dead-letters")
    (dead,) = es.docs("dead-letters")
    assert '"line 3"' in dead["original"] and dead["error"]["reason"] == "400 document_parsing_exception"
    assert run.bulk.counters["dead_lettered_total"] == 1
    assert run.bulk.queued_bytes == 0  # the dead letter was counted in as well as out
    assert sorted(run.finished) == [(0, i + 1) for i in range(10)]


def test_a_refused_dead_letter_is_dropped_not_wrapped_again(es: EsStandin) -> None:
    es.item_error(lambda d: d.get("message") == "line 3", status=400, error_type="document_parsing_exception")
    es.item_error(lambda d: "original" in d, status=400, error_type="mapper_parsing_exception")
    run = ship(es, make_docs(10), all_finished(10), dead_letter_index="dead-letters")
    assert es.docs("dead-letters") == []
    assert run.bulk.counters["dead_lettered_total"] == 1
    assert run.bulk.counters["dead_letters_refused_total"] == 1
    assert run.bulk.failed_reasons == {"400 document_parsing_exception": 1,
                                       "dead letter: 400 mapper_parsing_exception": 1}
    # One bulk for the lines, one for the dead letter: nothing grows or loops.
    assert es.bulk_request_count == 2
    assert run.bulk.queued_bytes == 0
    assert sorted(run.finished) == [(0, i + 1) for i in range(10)]


def test_a_dead_letter_that_exhausts_its_retries_is_dropped_too(es: EsStandin) -> None:
    es.item_error(lambda d: d.get("message") == "line 0", status=400, error_type="document_parsing_exception")
    es.item_error(lambda d: "original" in d, status=503, error_type="unavailable_shards_exception")
    run = ship(es, make_docs(2), all_finished(2), dead_letter_index="dead-letters", max_retries=2)
    assert run.bulk.counters["dead_letters_refused_total"] == 1
    assert "dead letter: retries exhausted (max_retries)" in run.bulk.failed_reasons
    assert run.bulk.queued_bytes == 0
