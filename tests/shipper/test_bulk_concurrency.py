"""Two bulk requests of an output in flight at once: a slow one does not hold up the next (issue 15: with one, the
shipper idled while Elasticsearch handled each request)."""

from __future__ import annotations

from shipper.bulk import SENDERS
from tests.es_standin import EsStandin
from tests.shipper.bulk_harness import INDEX, all_finished, make_docs, ship


def test_the_next_bulk_goes_while_one_is_held() -> None:
    assert SENDERS >= 2
    with EsStandin() as es:
        hold = es.hold_next(1, path="_bulk")
        # bulk_max_size 50: the first request to arrive is held; the other carries the other half meanwhile. Which
        # half comes first is not fixed: each sender gzips its body in a worker thread, and either may finish first.
        run = ship(es, make_docs(100), lambda r: len(r.finished) >= 50)
        assert set(run.finished) in ({(0, i + 1) for i in range(50, 100)}, {(0, i + 1) for i in range(50)})
        assert run.bulk.in_flight == 50 and es.count(INDEX) == 50
        hold.release()


def test_every_document_once_with_several_senders() -> None:
    with EsStandin() as es:
        es.delay_next(0.2, count=3, path="_bulk")
        run = ship(es, make_docs(500), all_finished(500))
        assert max(run.finished.values()) == 1 and len(run.finished) == 500
        assert es.count(INDEX) == 500 and run.bulk.counters["shipped_total"] == 500


def test_a_sender_in_back_off_retries_at_once_when_the_output_answers_again() -> None:
    # The first request (documents 0-49) fails; its sender backs off for a minute. The second request (50-99) passes:
    # the output answers again, so the first sender cuts its back-off short. Without that it slept on with the oldest
    # documents, and the acknowledgement (and so the fetching) waited for it: after an outage, catch-up idled.
    with EsStandin() as es:
        es.fail_next(503, count=1, path="_bulk")
        run = ship(es, make_docs(100), all_finished(100), timeout=15, backoff_init=60.0, backoff_max=60.0)
        assert max(run.finished.values()) == 1 and es.count(INDEX) == 100
        assert run.bulk.counters["retried_total"] == 50 and run.bulk.reachable

