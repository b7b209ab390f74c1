"""A per-item 403 (a missing index privilege) or 404 (auto-create denied) inside a 200 bulk answer is a configuration
fault: the lines wait on disk as in an outage (no drop, no dead letter), the plugin says so once until it is fixed,
then they ship."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin
from tests.shipper.bulk_harness import INDEX, Run, all_finished, make_docs, ship

LINES = 1000
USER, PASSWORD = "shipper", "s3cr3t-shipper-pw"


def revoke_privilege(es: EsStandin) -> Callable[[], None]:
    es.deny_writes(USER)
    return lambda: es.allow_writes(USER)


def deny_auto_create(es: EsStandin) -> Callable[[], None]:
    es.auto_create_index = False

    def fix() -> None:
        es.auto_create_index = True
    return fix


FAULTS = {"403 missing privilege": (revoke_privilege, "403 security_exception"),
          "404 auto-create denied": (deny_auto_create, "404 index_not_found_exception")}


@pytest.fixture
def es() -> Iterator[EsStandin]:
    with EsStandin(users={USER: PASSWORD}) as standin:
        yield standin


@pytest.mark.parametrize("fault", list(FAULTS))
def test_lines_wait_through_a_configuration_fault_then_all_arrive(plugin: RunningPlugin, es: EsStandin,
                                                                 fault: str) -> None:
    make_fault, reason = FAULTS[fault]
    fix = make_fault(es)
    lg = plugin.logger(config={"hosts": es.url, "user": USER, "password": PASSWORD, "dead_letter_index": "dead",
                               "backoff_init": "50ms", "backoff_max": "300ms", "max_retries": "3"})
    assert lg.start() == {"_status": 200}
    lg.write(*(entry(b"line %d" % i) for i in range(LINES)))

    def output() -> dict[str, object]:
        outputs = plugin.stats()["shipper"]["outputs"]
        return outputs[0] if outputs else {}

    wait_until(lambda: output().get("config_fault") == reason, 20, message=f"the shipper to report {reason}")
    # Several rounds of back-off beyond max_retries=3: still nothing dropped, dead-lettered or stored.
    wait_until(lambda: plugin.stats()["shipper"]["retried_total"] > 5 * 50, 20, message="retries")
    assert es.count() == 0
    shipper = plugin.stats()["shipper"]
    assert shipper["failed_total"] == 0 and shipper["dead_lettered_total"] == 0
    assert output()["reachable"] is False and reason in str(output()["last_error"])

    fix()
    wait_until(lambda: es.count(INDEX) == LINES, 30, message=f"{LINES} documents after the fix")
    counts = Counter(d["message"] for d in es.docs(INDEX))
    assert len(counts) == LINES and max(counts.values()) == 1
    wait_until(lambda: output().get("reachable") is True and output().get("config_fault") == "", 10,
               message="the output to be reported healthy again")
    log = plugin.log_text()
    assert log.count("configuration fault") == 1, log  # loud, and once
    assert "delivering again" in log
    assert PASSWORD not in log
    lg.stop()


def test_a_configuration_fault_never_counts_against_max_retries(es: EsStandin) -> None:
    """At the bulk level: documents refused with 403 stay in flight, unfinished, until the privilege is back."""
    es.deny_writes(USER)
    granted: list[bool] = []

    def grant_after_ten_rounds(run: Run) -> bool:
        if not granted and run.bulk.counters["retried_total"] >= 10 * 5:
            assert not run.finished and run.bulk.counters["failed_total"] == 0
            assert run.bulk.config_fault == "403 security_exception"
            granted.append(True)
            es.allow_writes(USER)
        return bool(granted) and all_finished(5)(run)

    run = ship(es, make_docs(5), grant_after_ten_rounds, auth={"user": USER, "password": PASSWORD}, max_retries=2)
    assert run.bulk.counters["shipped_total"] == 5 and run.bulk.counters["config_fault_docs_total"] >= 50
    assert run.bulk.config_fault == "" and run.bulk.reachable is True


def test_a_fault_of_one_index_does_not_hold_up_the_others_of_the_output(es: EsStandin) -> None:
    es.deny_writes(USER, ("logs-denied-*",))
    docs = make_docs(40)
    for doc in docs[::2]:
        doc.index = "logs-denied-default"
    granted: list[bool] = []

    def others_ship_then_grant(run: Run) -> bool:
        if not granted and len(run.finished) == 20:
            assert es.count("logs-denied-default") == 0 and run.bulk.counters["config_fault_docs_total"] >= 20
            assert run.bulk.config_fault == "403 security_exception"
            granted.append(True)
            es.allow_writes(USER)
        return bool(granted) and all_finished(40)(run) and not run.bulk.parked

    run = ship(es, docs, others_ship_then_grant, auth={"user": USER, "password": PASSWORD}, bulk_max_size=10)
    assert es.count("logs-denied-default") == 20 and es.count(INDEX) == 20
    assert run.bulk.config_fault == "" and run.bulk.queued_bytes == 0 and run.bulk.parked_bytes == 0
