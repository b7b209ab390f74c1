"""DESTROY_LOGS_ON_STOP through the real supervisor: a stopped container's files go only once Elasticsearch has every
line (README: "delete a container's local log files when it stops (after its lines were shipped)")."""

from __future__ import annotations

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until
from tests.conftest import reader_gone
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"



def test_files_of_a_stopped_container_stay_until_every_line_is_shipped(destroying_plugin: RunningPlugin) -> None:
    plugin = destroying_plugin
    with EsStandin() as es:
        es.down()
        # Ten bulk requests, each answered slowly once Elasticsearch is back: the acknowledged position moves in
        # steps, and a deletion after the first step would leave most lines undelivered.
        lg = plugin.logger(config={"hosts": es.url, "backoff_init": "100ms", "backoff_max": "200ms",
                                   "bulk_max_size": "50"})
        assert lg.start() == {"_status": 200}
        lines = [b"undelivered %04d" % i for i in range(500)]
        lg.write(*(entry(line) for line in lines))
        lg.stop()
        folder = plugin.data_dir / "containers" / lg.container_id
        # The reader exits only once the local store confirmed its LoggerClosed: the store has seen the stop and
        # decided. Had it taken the container for fully shipped, the folder would be gone by now.
        wait_until(lambda: reader_gone(plugin, lg), message="the reader to exit")
        assert folder.exists(), "deleted at the stop although Elasticsearch has none of its lines"
        wait_until(lambda: plugin.stats()["shipper"]["retried_total"] > 0, 20,
                   message="the shipper to be retrying against the stopped Elasticsearch")
        assert (folder / "container.log").stat().st_size > 0
        assert plugin.stats()["localstore"]["destroyed_total"] == 0
        assert [e.line for e in plugin.client.read_logs(lg.info)] == [line + b"\n" for line in lines]

        es.delay_next(0.2, count=None, path="_bulk")
        es.up()
        wait_until(lambda: not folder.exists(), 30, message="the folder to be deleted once everything shipped")
        # The folder goes only after the acknowledgement, which follows Elasticsearch's answer: all lines are there.
        assert sorted(d["message"] for d in es.docs(INDEX)) == sorted(line.decode() for line in lines)
        wait_until(lambda: plugin.stats()["localstore"]["destroyed_total"] == 1, message="the deletion counted")
        assert "deleting them anyway" not in plugin.log_text()
