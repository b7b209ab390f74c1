"""Against a real Elasticsearch when ELASTICSEARCH_URL is set (e.g. https://elastic:pw@es:9200); skipped otherwise.

ELASTICSEARCH_CA may name a CA file for TLS. The test ships a few lines through the real supervisor and reads them
back by container id.
"""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

import pytest

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until

URL = os.environ.get("ELASTICSEARCH_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="set ELASTICSEARCH_URL to test against a real cluster")


def test_ship_to_a_real_cluster(plugin: RunningPlugin) -> None:
    from elasticsearch import Elasticsearch

    parts = urlsplit(URL)
    host = f"{parts.scheme}://{parts.hostname}:{parts.port or 9200}"
    config = {"hosts": host, "flush_interval": "200ms"}
    if parts.username:
        config |= {"user": parts.username, "password": parts.password or ""}
    if os.environ.get("ELASTICSEARCH_CA"):
        config["ssl.certificate_authorities"] = os.environ["ELASTICSEARCH_CA"]
    lg = plugin.logger(config=config)
    assert lg.start() == {"_status": 200}
    lg.write(*(entry(b"real cluster line %d" % i, time_nano=time.time_ns()) for i in range(10)))
    client = Elasticsearch(host, basic_auth=(parts.username, parts.password) if parts.username else None,
                           ca_certs=os.environ.get("ELASTICSEARCH_CA"))

    def count() -> int:
        quiet = client.options(ignore_status=404)  # the data stream appears with the first document
        quiet.indices.refresh(index="logs-docker-default")
        found = quiet.count(index="logs-docker-default", query={"term": {"container.id": lg.container_id}})
        return int(found.get("count", 0))

    wait_until(lambda: count() == 10, 60, 0.5, message="10 documents in the real cluster")
    lg.stop()
