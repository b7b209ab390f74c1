"""Output configs and clients against the Elasticsearch stand-in: auth, TLS modes, failover, proxy, secrets."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TlsError
from elasticsearch import ApiError, AuthenticationException

from shipper.output import (
    MAX_CONNECTIONS_PER_NODE,
    OutputConfig,
    OutputConfigError,
    make_client,
    output_config,
    ssl_context,
    validate_output,
)
from supervisor.logopts import parse_log_options
from tests.es_standin import EsStandin
from tests.tls_certs import TlsFiles, make_tls_files

PASSWORD = "s3cr3t-Passw0rd"
API_ID, API_SECRET = "key-id-1", "s3cr3t-api-key"
USERS = {"elastic": PASSWORD}
SECRETS = (PASSWORD, API_SECRET, base64.b64encode(f"{API_ID}:{API_SECRET}".encode()).decode())


def options(**opts: str) -> dict[str, Any]:
    return dict(parse_log_options(opts).values)


def config(**opts: str) -> OutputConfig:
    return output_config(options(**opts))


async def _info(cfg: OutputConfig, calls: int = 1) -> list[Any]:
    """``calls`` info() calls on one client; each outcome is the tagline or the exception raised."""
    client = make_client(cfg)
    outcomes: list[Any] = []
    try:
        for _ in range(calls):
            try:
                outcomes.append((await client.info())["tagline"])
            except Exception as exc:  # the outcome under test
                outcomes.append(exc)
    finally:
        await client.close()
    return outcomes


def info(cfg: OutputConfig, calls: int = 1) -> list[Any]:
    return asyncio.run(_info(cfg, calls))


OK = "You Know, for Search"
BAD_PEM = "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n"


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def secured() -> Iterator[EsStandin]:
    with EsStandin(users=USERS, api_keys={API_ID: API_SECRET}) as es:
        yield es


# ---------------------------------------------------------------------------- option normalisation


@pytest.mark.parametrize(("hosts", "expected"), [
    ("es", ("http://es:9200",)),
    ("es:9201", ("http://es:9201",)),
    ("https://es", ("https://es:9200",)),
    ("https://es.example.com:9243/prefix/", ("https://es.example.com:9243/prefix",)),
    ("10.0.0.1:9200,10.0.0.2", ("http://10.0.0.1:9200", "http://10.0.0.2:9200")),
    ("[::1]:9200", ("http://[::1]:9200",)),
    ("http://[fe80::1]", ("http://[fe80::1]:9200",)),
])
def test_hosts_are_normalised(hosts: str, expected: tuple[str, ...]) -> None:
    assert config(hosts=hosts).hosts == expected


@pytest.mark.parametrize(("opts", "message"), [
    ({"hosts": "es:99999"}, "'hosts'.*bad port"),
    ({"hosts": "es:port"}, "'hosts'.*bad port"),
    ({"hosts": "ftp://es"}, "'hosts'.*not host:port"),
    ({"hosts": "http://es:9200/?x=1"}, "'hosts'.*query"),
    ({"hosts": f"https://elastic:{PASSWORD}@es"}, "'hosts': put credentials in 'user'"),
    ({"cloud_id": "nope"}, "'cloud_id'"),
    ({"cloud_id": "name:" + base64.b64encode(b"host$$kb").decode()}, "'cloud_id'"),
    ({"hosts": "es", "api_key": "bm90LWEta2V5"}, "'api_key'"),
    ({"hosts": "es", "cloud_auth": PASSWORD}, "'cloud_auth'"),
    ({"hosts": "es", "proxy_url": "socks5://proxy:1080"}, "'proxy_url'"),
    ({"hosts": "es", "ssl.certificate_authorities": "/nonexistent/ca.pem"},
     "'ssl.certificate_authorities': cannot use the path given"),
    ({"hosts": "es", "ssl.certificate_authorities": BAD_PEM},
     "'ssl.certificate_authorities': no usable PEM"),
    ({"hosts": "es", "ssl.certificate": "/nonexistent/c.pem", "ssl.key": "/nonexistent/k.pem"},
     "'ssl.certificate'"),
])
def test_validate_output_names_the_option(opts: dict[str, str], message: str) -> None:
    with pytest.raises(OutputConfigError, match=message) as raised:
        validate_output(options(**opts))
    assert_no_secret(str(raised.value))


def test_validation_loads_no_system_ca_store(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without ssl.* PEM nothing can fail to load: the system store (100+ ms) is left to the shipper's client.
    loaded: list[object] = []
    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", lambda self, *a: loaded.append(self))
    validate_output(options(hosts="https://es:9200", **{"ssl.verification_mode": "certificate"}))
    assert loaded == []
    make_client(config(hosts="https://es:9200"))
    assert len(loaded) == 1  # the client itself still verifies against the system store


@pytest.mark.parametrize("hosts", [
    "http://es:9200/?api_key=s3cr3t-api-key",
    "http://es:9200/#s3cr3t-api-key",
    "ftp://es:9200/?api_key=s3cr3t-api-key",
    "http://es:port/?api_key=s3cr3t-api-key",
])
def test_a_host_url_query_is_never_echoed(hosts: str) -> None:
    with pytest.raises(OutputConfigError, match="'hosts'") as raised:
        validate_output(options(hosts=hosts))
    assert_no_secret(str(raised.value))


def test_key_path_is_not_echoed(tmp_path: Path, tls: TlsFiles) -> None:
    with pytest.raises(OutputConfigError, match=r"'ssl\.key': cannot use the path given") as raised:
        validate_output(options(**{"hosts": "es", "ssl.certificate": str(tls.server_cert),
                                   "ssl.key": str(tmp_path / "secret-key-name.pem")}))
    assert "secret-key-name" not in str(raised.value)


def test_mismatched_client_key_is_refused(tmp_path: Path, tls: TlsFiles) -> None:
    other = make_tls_files(tmp_path, prefix="other")
    with pytest.raises(OutputConfigError, match=r"'ssl\.certificate'/'ssl\.key'") as raised:
        validate_output(options(**{"hosts": "es", "ssl.certificate": str(tls.server_cert),
                                   "ssl.key": other.server_key.read_text()}))
    assert "PRIVATE KEY" not in str(raised.value)


def test_inline_client_cert_loads_and_leaves_no_file(tmp_path: Path, tls: TlsFiles,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cfg = config(**{"hosts": "https://es", "ssl.certificate": tls.server_cert.read_text(),
                    "ssl.key": tls.server_key.read_text()})
    assert ssl_context(cfg).verify_mode.name == "CERT_REQUIRED"
    assert list(scratch.iterdir()) == []
    assert "PRIVATE KEY" not in repr(cfg) and "CERTIFICATE" not in repr(cfg)


# Elastic's documented example (cloud docs) and self-made ids, decoded as elastic-transport does.
ELASTIC_DOC_ID = ("cluster_name:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E"
                  "2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==")


@pytest.mark.parametrize(("cloud_id", "url"), [
    (ELASTIC_DOC_ID, "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:443"),
    ("mine:" + base64.b64encode(b"eu-west-1.aws.example.io:9243$es-uuid$kb-uuid").decode(),
     "https://es-uuid.eu-west-1.aws.example.io:9243"),
    ("mine:" + base64.b64encode(b"host.example$abc").decode(), "https://abc.host.example:443"),
    (":" + base64.b64encode(b"host.example$abc$").decode(), "https://abc.host.example:443"),
])
def test_cloud_id_decoding(cloud_id: str, url: str) -> None:
    cfg = config(cloud_id=cloud_id)
    assert cfg.hosts == (url,)
    assert cfg.describe().startswith(url)


def test_equal_options_give_equal_hashable_configs() -> None:
    a = config(hosts="es1,es2", user="elastic", password=PASSWORD)
    b = config(hosts="http://es1:9200, es2:9200", user="elastic", password=PASSWORD)
    assert a == b and len({a, b}) == 1
    assert a != config(hosts="es1,es2", user="elastic", password="other")


def test_secrets_stay_out_of_repr_and_describe() -> None:
    cfgs = [
        config(hosts="https://es", user="elastic", password=PASSWORD, proxy_url=f"http://u:{PASSWORD}@proxy:3128"),
        config(hosts="es", api_key=f"{API_ID}:{API_SECRET}"),
        config(hosts="es", cloud_auth=f"elastic:{PASSWORD}"),
    ]
    for cfg in cfgs:
        assert_no_secret(repr(cfg), cfg.describe(), str(cfg))
    assert cfgs[0].describe() == "https://es:9200 as user elastic via http://***@proxy:3128"
    assert cfgs[1].describe() == "http://es:9200 with an API key"
    assert cfgs[2].describe() == "http://es:9200 as user elastic"


# ---------------------------------------------------------------------------- auth against the stand-in


def test_auth_forms(secured: EsStandin) -> None:
    encoded = base64.b64encode(f"{API_ID}:{API_SECRET}".encode()).decode()
    for opts in ({"user": "elastic", "password": PASSWORD}, {"api_key": f"{API_ID}:{API_SECRET}"},
                 {"api_key": encoded}, {"cloud_auth": f"elastic:{PASSWORD}"}):
        assert info(config(hosts=secured.url, **opts)) == [OK]
    kinds = [r.headers["authorization"].split()[0] for r in secured.requests]
    assert kinds == ["Basic", "ApiKey", "ApiKey", "Basic"]
    assert secured.requests[1].headers["authorization"] == f"ApiKey {encoded}"


@pytest.mark.parametrize("opts", [{"user": "elastic", "password": PASSWORD + "x"},
                                  {"api_key": f"{API_ID}:{API_SECRET}x"}])
def test_auth_failure_text_holds_no_secret(secured: EsStandin, opts: dict[str, str]) -> None:
    [error] = info(config(hosts=secured.url, **opts))
    assert isinstance(error, AuthenticationException) and error.status_code == 401
    assert_no_secret(str(error), repr(error), repr(error.body), repr(error.meta))


# ---------------------------------------------------------------------------- TLS


def test_full_verification_with_inline_and_file_ca(tls: TlsFiles) -> None:
    with EsStandin(tls=tls) as es:
        assert info(config(**{"hosts": es.url, "ssl.certificate_authorities": str(tls.ca_cert)})) == [OK]
        assert info(config(**{"hosts": es.url, "ssl.certificate_authorities": tls.ca_cert.read_text()})) == [OK]
        localhost = es.url.replace("127.0.0.1", "localhost")
        assert info(config(**{"hosts": localhost, "ssl.certificate_authorities": str(tls.ca_cert)})) == [OK]


def test_wrong_ca_fails(tls: TlsFiles, tmp_path: Path) -> None:
    other = make_tls_files(tmp_path, prefix="other")
    with EsStandin(tls=tls) as es:
        for mode in ("full", "certificate"):
            [error] = info(config(**{"hosts": es.url, "ssl.certificate_authorities": str(other.ca_cert),
                                     "ssl.verification_mode": mode}))
            assert isinstance(error, TlsError)
            assert "CERTIFICATE_VERIFY_FAILED" in repr(error)
        [error] = info(config(hosts=es.url))  # the system store does not know the test CA
        assert isinstance(error, TlsError)


def test_hostname_mismatch_fails_in_full_passes_in_certificate(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path, hostnames=("es.invalid",))
    with EsStandin(tls=files) as es:
        # An IP address is checked too (elastic-transport's own default context skips the check for IPs).
        for url in (es.url, es.url.replace("127.0.0.1", "localhost")):
            base = {"hosts": url, "ssl.certificate_authorities": str(files.ca_cert)}
            [error] = info(config(**base))
            assert isinstance(error, TlsError) and "mismatch" in repr(error)
            assert info(config(**base, **{"ssl.verification_mode": "certificate"})) == [OK]


def test_no_verification_passes_and_warns_once(tls: TlsFiles, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="elp.shipper")
    with EsStandin(tls=tls, users=USERS) as es:
        opts = {"hosts": es.url, "ssl.verification_mode": "none", "user": "elastic", "password": PASSWORD}
        assert info(config(**opts)) == [OK]
        assert info(config(**opts)) == [OK]  # an equal config: a second client, no second warning
    warnings = [r for r in caplog.records if r.name == "elp.shipper"]
    assert len(warnings) == 1
    assert "not verified" in warnings[0].getMessage() and es.url in warnings[0].getMessage()
    assert_no_secret(caplog.text)


@pytest.mark.parametrize("auth", [{"user": "elastic", "password": PASSWORD}, {"api_key": f"{API_ID}:{API_SECRET}"}])
def test_credentials_over_plain_http_warn_once(auth: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="elp.shipper")
    with EsStandin(users=USERS, api_keys={API_ID: API_SECRET}) as es:
        assert info(config(**{"hosts": es.url, **auth})) == [OK]
        assert info(config(**{"hosts": es.url, **auth})) == [OK]  # an equal config: no second warning
    warnings = [r.getMessage() for r in caplog.records if r.name == "elp.shipper"]
    assert len(warnings) == 1 and "plain http://" in warnings[0] and es.url in warnings[0]
    assert_no_secret(caplog.text)


def test_no_warning_for_plain_http(caplog: pytest.LogCaptureFixture) -> None:
    with EsStandin() as es:
        assert info(config(**{"hosts": es.url, "ssl.verification_mode": "none"})) == [OK]
    assert not [r for r in caplog.records if r.name == "elp.shipper"]


# ---------------------------------------------------------------------------- several hosts, proxy


def test_failover_happens_on_the_next_call_not_within_one(caplog: pytest.LogCaptureFixture) -> None:
    """max_retries=0: a call that picks the dead host fails (ConnectionError); the node is then put on a timeout
    (1 s, doubling), so the shipper's next try goes to the live host."""
    with EsStandin() as live, EsStandin() as dead:
        dead.down()
        outcomes = info(config(hosts=f"{dead.url},{live.url}"), calls=4)
    # Round-robin over a shuffled pool: of the first two calls exactly one picks the dead host.
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, TransportConnectionError)]
    assert len(failed) == 1 and failed[0] in (0, 1)
    assert [o for o in outcomes if not isinstance(o, TransportConnectionError)] == [OK] * 3
    assert len(live.requests) == 3


def test_server_errors_are_returned_not_retried() -> None:
    with EsStandin() as es:
        es.fail_next(503)
        [error] = info(config(hosts=es.url))
        assert isinstance(error, ApiError) and error.status_code == 503
        assert len(es.requests) == 1


def test_proxy_url_is_used() -> None:
    # The stand-in answers absolute-form requests ("GET http://es.invalid:9200/"), so it can play the proxy:
    # es.invalid cannot resolve, so an answer proves the request went through the proxy.
    with EsStandin() as proxy:
        assert info(config(hosts="http://es.invalid:9200", proxy_url=proxy.url)) == [OK]
        assert proxy.requests[0].headers["host"] == "es.invalid:9200"


# ---------------------------------------------------------------------------- ssl.* paths


def _bad_paths(tmp: Path, pem: Path) -> dict[str, str]:
    """Paths that must all be refused the same way, whatever they are."""
    link = tmp / "link.pem"
    link.symlink_to(pem)
    fifo = tmp / "fifo.pem"
    os.mkfifo(fifo)
    big = tmp / "big.pem"
    big.write_bytes(b"-" * ((4 << 20) + 1))
    return {"missing": str(tmp / "missing.pem"), "link": str(link), "fifo": str(fifo), "device": "/dev/zero",
            "directory": str(tmp), "too large": str(big), "nul": "a\x00b"}


@pytest.mark.parametrize("option", ["ssl.certificate_authorities", "ssl.certificate", "ssl.key"])
def test_ssl_paths_must_be_regular_files_and_every_refusal_reads_the_same(option: str, tmp_path: Path,
                                                                           tls: TlsFiles) -> None:
    pem = {"ssl.certificate_authorities": tls.ca_cert, "ssl.certificate": tls.server_cert,
           "ssl.key": tls.server_key}[option]
    pair = {"ssl.certificate": str(tls.server_cert), "ssl.key": str(tls.server_key)}
    texts = set()
    for what, path in _bad_paths(tmp_path, pem).items():
        opts = {"hosts": "https://es:9200", **(pair if option != "ssl.certificate_authorities" else {}), option: path}
        with pytest.raises(OutputConfigError, match=f"'{option}': cannot use the path given") as raised:
            validate_output(options(**opts))
        texts.add(str(raised.value))
        assert path not in str(raised.value), what
    assert len(texts) == 1  # nothing tells whether a file exists, or what it is
    good = {"hosts": "https://es:9200", **(pair if option != "ssl.certificate_authorities" else {}), option: str(pem)}
    validate_output(options(**good))


def test_a_client_key_file_is_read_once_not_by_path_later(tmp_path: Path, tls: TlsFiles) -> None:
    key = tmp_path / "key.pem"
    key.write_text(tls.server_key.read_text())
    cfg = config(**{"hosts": "https://es:9200", "ssl.certificate": str(tls.server_cert), "ssl.key": str(key)})
    key.unlink()  # swapped or removed after validation: the config holds the key it read
    assert cfg.client_key is not None and "PRIVATE KEY" in cfg.client_key
    ssl_context(cfg)


def test_a_zero_timeout_is_refused() -> None:
    with pytest.raises(OutputConfigError, match="'timeout': must be more than 0"):
        validate_output(options(hosts="es", timeout="0s"))


# ---------------------------------------------------------------------------- connections


class SilentServer:
    """Accepts TCP connections and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_a_silent_server_costs_a_timeout_even_without_a_request_timeout(silent: SilentServer) -> None:
    """The headers must come within the output's timeout, also for a call that lifts its request timeout."""

    async def call() -> BaseException | None:
        client = make_client(config(hosts=silent.url, timeout="1s"))
        try:
            await asyncio.wait_for(client.options(request_timeout=None).info(), 15)
        except (TransportConnectionError, ConnectionTimeout) as exc:
            return exc
        finally:
            await client.close()
        return None

    started = time.monotonic()
    assert asyncio.run(call()) is not None
    assert time.monotonic() - started < 5


def test_connections_per_node_are_capped(silent: SilentServer) -> None:
    """Ten calls at once on one node: two connections, the other calls wait for one (none times out here)."""

    async def many() -> int:
        client = make_client(config(hosts=silent.url, timeout="60s"))
        calls = [asyncio.ensure_future(client.info()) for _ in range(10)]
        try:
            deadline = time.monotonic() + 10
            while len(silent.accepted) < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # not a sync: the poll interval of a deadline loop
            await asyncio.sleep(0.5)  # not a sync: time for uncapped calls to open their own connections
            return len(silent.accepted)
        finally:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            await client.close()

    assert 1 <= asyncio.run(many()) <= MAX_CONNECTIONS_PER_NODE
