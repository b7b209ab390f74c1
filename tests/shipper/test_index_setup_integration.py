"""Index templates and ILM policies of a custom index (shipper/index_setup.py), through the real supervisor and
shipper, seen from the Elasticsearch stand-in."""

from __future__ import annotations

import itertools
import time
import urllib.request

import orjson
import pytest

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin

TS = 1_714_558_830_000_000_000  # 2024-05-01T10:20:30Z


def setup_requests(es: EsStandin) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in es.requests if r.path.startswith(("/_index_template", "/_ilm"))]


def test_a_custom_index_gets_its_template_once_per_output(plugin: RunningPlugin, es: EsStandin) -> None:
    config = {"hosts": es.url, "index": "docker-%{+yyyy.MM.dd}", "flush_interval": "50ms", "bulk_max_size": "5"}
    loggers = [plugin.logger(name=f"web-{n}", config=config) for n in range(2)]
    for lg in loggers:
        assert lg.start() == {"_status": 200}
        lg.write(*(entry(b"line %d" % i, time_nano=TS + i) for i in range(20)))
    wait_until(lambda: es.count("docker-2024.05.01") == 40, 20, message="40 documents")
    template = es.index_template("docker")
    assert template is not None and template["index_patterns"] == ["docker-*"]
    # Installed before the first line: the index was created with the template's mappings.
    _, mappings = es.created_with("docker-2024.05.01")
    assert mappings["properties"]["@timestamp"] == {"type": "date_nanos"}
    assert mappings["properties"]["message"] == {"type": "match_only_text"}
    assert len(es.bulk_requests) >= 8  # many bulks and two containers, one setup:
    assert setup_requests(es) == [("HEAD", "/_index_template/docker"), ("PUT", "/_index_template/docker")]
    wait_until(lambda: plugin.stats()["shipper"]["index_setup_installed_total"] == 1, 5, message="counted")
    for lg in loggers:
        lg.stop()


@pytest.mark.parametrize(("name", "pattern", "index"), [
    ("mine", "mine-*", "mine-logs"),  # the same name as ours would be: found, not replaced
    ("admin", "app-*", "app-logs"),  # another name covering the index at our priority: ES refuses ours
])
def test_a_template_already_governing_the_index_is_left_as_it_is(plugin: RunningPlugin, es: EsStandin, name: str,
                                                                  pattern: str, index: str) -> None:
    admin = {"index_patterns": [pattern], "priority": 150, "_meta": {"by": "admin"}}
    urllib.request.urlopen(urllib.request.Request(f"{es.url}/_index_template/{name}", orjson.dumps(admin),
                                                  method="PUT", headers={"Content-Type": "application/json"}))
    lg = plugin.logger(config={"hosts": es.url, "index": index, "setup.template.name": "mine",
                               "flush_interval": "50ms"})
    assert lg.start() == {"_status": 200}
    started = time.monotonic()
    lg.write(entry(b"x", time_nano=TS))
    wait_until(lambda: es.count(index) == 1, 20, message="the document")
    assert time.monotonic() - started < 10  # not held for the whole wait
    assert es.index_template(name) == {**admin, "composed_of": []}
    wait_until(lambda: plugin.stats()["shipper"]["index_setups_pending"] == 0, 5, message="the setup over")
    assert plugin.stats()["shipper"]["index_setup_failures_total"] == 0
    lg.stop()


def test_ilm_makes_a_data_stream_rolled_over_by_the_policy(plugin: RunningPlugin, es: EsStandin) -> None:
    lg = plugin.logger(config={"hosts": es.url, "index": "applogs", "setup.ilm.enabled": "true",
                               "setup.ilm.policy_name": "applogs-policy", "flush_interval": "50ms"})
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"rolled", time_nano=TS))
    wait_until(lambda: es.count("applogs") == 1, 20, message="the document")
    assert es.data_streams() == ["applogs"]
    policy = es.ilm_policy("applogs-policy")
    assert policy is not None
    assert policy["phases"]["hot"]["actions"]["rollover"] == {"max_primary_shard_size": "50gb", "max_age": "30d"}
    settings, _ = es.created_with("applogs")
    assert settings == {"index": {"lifecycle": {"name": "applogs-policy"}}}
    lg.stop()


def test_failures_are_retried_with_back_off_and_counted(plugin: RunningPlugin, es: EsStandin) -> None:
    es.fail_next(500, count=3, path="/_index_template")
    lg = plugin.logger(config={"hosts": es.url, "index": "retry-%{+yyyy.MM.dd}", "backoff_init": "100ms",
                               "flush_interval": "50ms"})
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"waits for its template", time_nano=TS))
    wait_until(lambda: es.count("retry-2024.05.01") == 1, 20, message="the document")
    tries = [r.received for r in es.requests if r.path == "/_index_template/retry"]
    assert len(tries) == 5  # three 500s, then HEAD (absent) and PUT
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(tries[:4])), tries  # backed off after each failure
    assert es.created_with("retry-2024.05.01")[1]  # the line waited: the index has the template's mappings
    wait_until(lambda: plugin.stats()["shipper"]["index_setup_failures_total"] == 3, 5, message="counted")
    assert plugin.log_text().count("cannot install it") == 1  # logged once (the same error each time)
    lg.stop()


def test_data_streams_of_the_builtin_logs_template_need_nothing(plugin: RunningPlugin, es: EsStandin) -> None:
    lg = plugin.logger(config={"hosts": es.url, "flush_interval": "50ms"})
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"default", time_nano=TS))
    wait_until(lambda: es.count("logs-docker-default") == 1, 20, message="the document")
    time.sleep(0.2)  # not a sync: any setup request would have been sent before the bulk
    assert setup_requests(es) == []
    lg.stop()


def test_a_setup_that_cannot_work_is_refused_at_start_logging(plugin: RunningPlugin, es: EsStandin) -> None:
    for config, named in [({"index": "%{[container.name]}-logs"}, "setup.template.name"),
                          ({"index": "app-%{+yyyy.MM.dd}", "setup.ilm.enabled": "true"}, "setup.ilm.enabled"),
                          ({"index": "app-logs", "setup.template.pattern": "other-*"}, "setup.template.pattern")]:
        answer = plugin.logger(config={"hosts": es.url, **config}).start()
        assert named in answer.get("Err", ""), answer
