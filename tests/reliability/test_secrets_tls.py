"""R6: secrets never leave the places meant for them; TLS is verified by default and a failure says so, once.

The secrets test starts the real plugin with loggers carrying distinctive secrets (password, API key, cloud_auth,
credentials in a host URL and in proxy_url, an inline client key) in configurations that work, that StartLogging
refuses, that Elasticsearch answers with 401/403, and that fail TLS verification; then it restarts the plugin
(the re-attach path reads the persisted loggers back) and scans everything the plugin produced: its debug log,
``GET /stats``, ``GET /metrics``, the ``stats`` command in both forms, every error body returned on the socket,
the indexed documents and every file under the data dir. Each secret is looked for as given and in the base64
forms it travels in (Basic and ApiKey headers). Only the two places that must keep the options to ship after a
restart, ``shipper/`` and ``loggers/``, may hold them, and only in files of mode 0600.

The TLS test runs one plugin against stand-ins over TLS: an unknown CA and a certificate for another name both
fail with a clear error logged once over several retry cycles and nothing indexed; the right CA works;
``ssl.verification_mode=none`` works and warns exactly once for several containers sharing the output, one with
other bulk settings, and across retries.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import ROOT, RunningPlugin, start_plugin, wait_until
from tests.es_standin import EsStandin
from tests.reliability.conftest import FigureTable, scale
from tests.tls_certs import TlsFiles, make_tls_files

INDEX = "logs-docker-default"
FAST_RETRIES = {"backoff_init": "100ms", "backoff_max": "200ms", "flush_interval": "50ms"}
RETRY_CYCLES = scale(4, 20)  # failed attempts each broken output must have made before its log lines are counted
ALLOWED_SECRET_FOLDERS = ("shipper", "loggers")  # the options are needed there to ship after a restart


def _token(kind: str) -> str:
    """A value that cannot occur by chance in anything the plugin writes."""
    return f"{kind}-{secrets.token_hex(10)}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass(frozen=True)
class Secrets:
    password: str = field(default_factory=lambda: _token("pw"))
    wrong_password: str = field(default_factory=lambda: _token("badpw"))
    api_key_id: str = "r6-key-id"
    api_key: str = field(default_factory=lambda: _token("ak"))
    wrong_api_key: str = field(default_factory=lambda: _token("badak"))
    cloud_password: str = field(default_factory=lambda: _token("cloudpw"))
    host_password: str = field(default_factory=lambda: _token("hostpw"))
    proxy_password: str = field(default_factory=lambda: _token("proxypw"))

    def patterns(self, client_key_pem: str) -> dict[str, bytes]:
        """Every form a secret could leak in: as given, base64 alone, and inside Basic/ApiKey headers."""
        plain = {
            "password": self.password, "wrong password": self.wrong_password, "API key": self.api_key,
            "wrong API key": self.wrong_api_key, "cloud_auth password": self.cloud_password,
            "host URL password": self.host_password, "proxy password": self.proxy_password,
        }
        forms = dict(plain)
        forms.update({f"base64({name})": _b64(value) for name, value in plain.items()})
        forms.update({
            "Basic elastic:password": _b64(f"elastic:{self.password}"),
            "Basic elastic:wrong password": _b64(f"elastic:{self.wrong_password}"),
            "Basic cloudy:cloud_auth password": _b64(f"cloudy:{self.cloud_password}"),
            "Basic elastic:host URL password": _b64(f"elastic:{self.host_password}"),
            "Basic proxy credentials": _b64(f"proxyuser:{self.proxy_password}"),
            "ApiKey id:key": self.api_key_header,
            "ApiKey id:wrong key": _b64(f"{self.api_key_id}:{self.wrong_api_key}"),
            # The second base64 line of the PEM body is private-key material (the first starts with a header
            # that every P-256 PKCS#8 key shares).
            "inline client key": client_key_pem.splitlines()[2],
        })
        return {name: value.encode() for name, value in forms.items()}

    @property
    def api_key_header(self) -> str:
        return _b64(f"{self.api_key_id}:{self.api_key}")


@dataclass
class SecretScan:
    """Everything the plugin produced, by source, and where any secret form turned up in it."""

    patterns: dict[str, bytes]
    scanned_bytes: int = 0
    sources: int = 0
    hits: list[tuple[str, str]] = field(default_factory=list)  # (source, secret form)

    def scan(self, source: str, data: bytes, may_hold_secrets: bool = False) -> list[str]:
        """The secret forms in ``data``; they count as hits unless the source is a place meant to keep them."""
        self.scanned_bytes += len(data)
        self.sources += 1
        found = [name for name, pattern in self.patterns.items() if pattern in data]
        if not may_hold_secrets:
            self.hits.extend((source, name) for name in found)
        return found

    def summary(self) -> str:
        by_source: dict[str, list[str]] = {}
        for source, name in self.hits:
            by_source.setdefault(source, []).append(name)
        return "\n".join(f"{source}: {', '.join(names)}" for source, names in sorted(by_source.items()))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def start_raw(lg: FakeLogger) -> tuple[int, bytes]:
    """StartLogging as dockerd sends it, returning the raw answer (the error body is scanned as sent)."""
    os.mkfifo(lg.path, 0o700)
    lg.fd = os.open(lg.path, os.O_RDWR)
    status, body = lg.client.request("/LogDriver.StartLogging",
                                     json.dumps({"File": str(lg.path), "Info": lg.info}).encode() + b"\n")
    if json.loads(body).get("Err"):
        lg.close()
    return status, body


def outputs(plugin: RunningPlugin) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = plugin.stats()["shipper"]["outputs"]
    return found


def stop_plugin(plugin: RunningPlugin) -> None:
    assert plugin.stop() == 0, plugin.log_text()[-3000:]


def stats_cli(plugin: RunningPlugin, *args: str) -> bytes:
    done = subprocess.run([sys.executable, "-m", "supervisor", "stats", "--socket", str(plugin.socket_path), *args],
                          cwd=ROOT, capture_output=True, timeout=30, check=True)
    return done.stdout + done.stderr


def http_get(plugin: RunningPlugin, path: str) -> bytes:
    status, body = plugin.client.request(path, None, method="GET")
    assert status == 200, body
    return body


def scan_plugin_answers(scan: SecretScan, plugin: RunningPlugin, when: str) -> None:
    scan.scan(f"GET /stats ({when})", http_get(plugin, "/stats"))
    scan.scan(f"GET /metrics ({when})", http_get(plugin, "/metrics"))
    scan.scan(f"stats --json ({when})", stats_cli(plugin, "--json"))
    scan.scan(f"stats table ({when})", stats_cli(plugin))


@dataclass
class FileVerdict:
    files: int = 0
    holding_secrets: list[str] = field(default_factory=list)
    misplaced: list[str] = field(default_factory=list)  # secrets outside the allowed folders or not 0600


def scan_data_dir(scan: SecretScan, data_dir: Path) -> FileVerdict:
    verdict = FileVerdict()
    for folder in ALLOWED_SECRET_FOLDERS:
        mode = stat.S_IMODE((data_dir / folder).stat().st_mode)
        if mode != 0o700:
            verdict.misplaced.append(f"{folder}/ is {oct(mode)}, not 0o700")
    for path in sorted(data_dir.rglob("*")):
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            continue
        verdict.files += 1
        relative = path.relative_to(data_dir)
        mode = stat.S_IMODE(info.st_mode)
        allowed = relative.parts[0] in ALLOWED_SECRET_FOLDERS and mode == 0o600
        found = scan.scan(f"file {relative}", path.read_bytes(), may_hold_secrets=allowed)
        if found:
            verdict.holding_secrets.append(f"{relative} ({oct(mode)})")
            if not allowed:
                verdict.misplaced.append(f"{relative} {oct(mode)}: {', '.join(found)}")
    return verdict


# ------------------------------------------------------------------------------------------------ secrets


@dataclass
class SecretsWorld:
    """The stand-ins and the configurations of the secrets test."""

    s: Secrets
    tls: TlsFiles
    other_key_pem: str
    secured: EsStandin  # security on: the right credentials work, wrong ones get 401
    forbidding: EsStandin  # every request answers 403
    proxy: EsStandin  # plays the HTTP proxy (and Elasticsearch behind it)
    dead_proxy: EsStandin  # a proxy that refuses connections
    untrusted: EsStandin  # TLS with a CA the plugin does not know

    def working(self) -> dict[str, dict[str, str]]:
        s, url = self.s, self.secured.url
        return {
            "basic auth": {"hosts": url, "user": "elastic", "password": s.password},
            "api_key id:key": {"hosts": url, "api_key": f"{s.api_key_id}:{s.api_key}"},
            "api_key base64": {"hosts": url, "api_key": s.api_key_header},
            "cloud_auth": {"hosts": url, "cloud_auth": f"cloudy:{s.cloud_password}"},
            "inline client key": {"hosts": url, "user": "elastic", "password": s.password,
                                  "ssl.certificate": self.tls.server_cert.read_text(),
                                  "ssl.key": self.tls.server_key.read_text()},
            "proxy with credentials": {"hosts": "http://es.invalid:9200", "user": "elastic", "password": s.password,
                                       "proxy_url": f"http://proxyuser:{s.proxy_password}@127.0.0.1:"
                                                    f"{self.proxy.port}"},
        }

    def failing(self) -> dict[str, dict[str, str]]:
        s = self.s
        return {
            "401 wrong password": {"hosts": self.secured.url, "user": "elastic", "password": s.wrong_password},
            "401 wrong API key": {"hosts": self.secured.url, "api_key": f"{s.api_key_id}:{s.wrong_api_key}"},
            "403 forbidden": {"hosts": self.forbidding.url, "user": "elastic", "password": s.password},
            "TLS unknown CA": {"hosts": self.untrusted.url, "api_key": f"{s.api_key_id}:{s.api_key}"},
            "proxy refusing": {"hosts": "http://es.invalid:9201", "cloud_auth": f"cloudy:{s.cloud_password}",
                               "proxy_url": f"http://proxyuser:{s.proxy_password}@127.0.0.1:{self.dead_proxy.port}"},
        }

    def refused(self) -> dict[str, tuple[dict[str, str], str]]:
        """Configurations StartLogging must refuse, with the option the error has to name ("a|b": either)."""
        s = self.s
        host_with_password = f"http://elastic:{s.host_password}@127.0.0.1:9200"
        return {
            "credentials in hosts": ({"hosts": host_with_password}, "hosts"),
            "credentials in hosts, bad port": ({"hosts": f"http://elastic:{s.host_password}@127.0.0.1:x"}, "hosts"),
            "credentials in endpoint": ({"endpoint": host_with_password}, "endpoint|hosts"),
            "proxy_url with an unknown scheme": ({"hosts": "es", "proxy_url": f"ftp://proxyuser:{s.proxy_password}"
                                                  "@proxy:21"}, "proxy_url"),
            "socks5 proxy_url": ({"hosts": "es", "proxy_url": f"socks5://proxyuser:{s.proxy_password}@proxy:1080"},
                                 "proxy_url"),
            "api_key neither id:key nor base64": ({"hosts": "es", "api_key": s.api_key}, "api_key"),
            "cloud_auth without a colon": ({"hosts": "es", "cloud_auth": s.cloud_password}, "cloud_auth"),
            "password without user": ({"hosts": "es", "password": s.password}, "user"),
            "two ways to authenticate": ({"hosts": "es", "user": "elastic", "password": s.password,
                                          "api_key": f"{s.api_key_id}:{s.api_key}"}, "api_key"),
            "a bad option beside a password": ({"hosts": "es", "user": "elastic", "password": s.password,
                                                "max-size": "lots"}, "max-size"),
            "unreadable CA beside a password": ({"hosts": "es", "user": "elastic", "password": s.password,
                                                 "ssl.certificate_authorities": "/nonexistent/ca.pem"},
                                                "ssl.certificate_authorities"),
            "client key not matching": ({"hosts": "es", "ssl.certificate": self.tls.server_cert.read_text(),
                                         "ssl.key": self.other_key_pem}, "ssl.key"),
            "bad cloud_id beside cloud_auth": ({"cloud_id": "nope", "cloud_auth": f"cloudy:{s.cloud_password}"},
                                               "cloud_id"),
        }


@pytest.fixture
def world(tls: TlsFiles, tmp_path: Path) -> Iterator[SecretsWorld]:
    s = Secrets()
    other = make_tls_files(tmp_path, prefix="other")
    with (EsStandin(users={"elastic": s.password, "cloudy": s.cloud_password},
                    api_keys={s.api_key_id: s.api_key}) as secured,
          EsStandin() as forbidding, EsStandin() as proxy, EsStandin() as dead_proxy,
          EsStandin(tls=tls) as untrusted):
        forbidding.fail_next(403, None, error_type="security_exception",
                             reason="action [indices:data/write/bulk] is unauthorized for user [elastic]")
        dead_proxy.down()
        yield SecretsWorld(s, tls, other.server_key.read_text(), secured, forbidding, proxy, dead_proxy, untrusted)


def start_loggers(plugin: RunningPlugin, configs: dict[str, dict[str, str]]) -> dict[str, FakeLogger]:
    loggers = {}
    for name, config in configs.items():
        lg = plugin.logger(name=name.replace(" ", "-").replace(":", ""), config={**config, **FAST_RETRIES})
        reply = lg.start()
        assert reply == {"_status": 200}, f"{name}: {reply}"
        lg.write(entry(f"{name}: first line".encode()), entry(f"{name}: second line".encode()))
        loggers[name] = lg
    return loggers


def start_refused(plugin: RunningPlugin, configs: dict[str, tuple[dict[str, str], str]], scan: SecretScan,
                  ) -> list[str]:
    """StartLogging with each config StartLogging must refuse; scans each error and returns those that do not
    name the option."""
    unnamed = []
    for case, (config, options) in configs.items():
        status, body = start_raw(plugin.logger(config=config))
        scan.scan(f"StartLogging error ({case})", body)
        error = json.loads(body).get("Err", "")
        if not (status == 200 and any(f"'{option}'" in error for option in options.split("|"))):
            unnamed.append(f"{case}: {status} {error!r}")
    return unnamed


def wait_for_failures(plugin: RunningPlugin, count: int) -> None:
    def failed_enough() -> bool:
        broken = [o for o in outputs(plugin) if o["reachable"] is False]
        return len(broken) == count and all(o["request_errors_total"] >= RETRY_CYCLES for o in broken)

    wait_until(failed_enough, 30, message=f"{count} outputs failing, each {RETRY_CYCLES} times")


def test_secrets_never_leave_their_place(short_tmp: Path, world: SecretsWorld, figures: FigureTable) -> None:
    scan = SecretScan(world.s.patterns(world.tls.server_key.read_text()))
    plugin = start_plugin(short_tmp)
    try:
        working = start_loggers(plugin, world.working())
        failing = start_loggers(plugin, world.failing())
        unnamed = start_refused(plugin, world.refused(), scan)
        wait_until(lambda: len(world.secured.docs(INDEX)) == 2 * (len(working) - 1)
                   and len(world.proxy.docs(INDEX)) == 2, 30, message="every working logger's lines indexed")
        wait_for_failures(plugin, len(failing))
        scan_plugin_answers(scan, plugin, "running")
        stop_plugin(plugin)
        # The re-attach path: persisted loggers and shipping configs are read back and used again.
        plugin = start_plugin(short_tmp)
        wait_until(lambda: len(plugin.stats()["readers"]) == len(working) + len(failing), 20,
                   message="every logger re-attached")
        wait_for_failures(plugin, len(failing))
        scan_plugin_answers(scan, plugin, "after a restart")
        stop_plugin(plugin)
    finally:
        if plugin.proc.poll() is None:
            plugin.stop()
    scan.scan("plugin log", plugin.log_path.read_bytes())
    for standin in (world.secured, world.proxy):
        scan.scan(f"documents in {standin.url}", json.dumps(standin.docs()).encode())
    files = scan_data_dir(scan, plugin.data_dir)

    figures.add("R6", f"secret forms found in what the plugin produced ({scan.sources} sources: debug log, "
                "/stats, /metrics, stats CLI, StartLogging errors, documents, data files)",
                f"{len(scan.hits)} hits in {scan.scanned_bytes:,} bytes "
                f"({len(scan.patterns)} forms of {len(world.working()) + len(world.failing())} configs)",
                "0", not scan.hits)
    figures.add("R6", "data-dir files holding a secret outside shipper/ and loggers/ at 0600",
                f"{len(files.misplaced)} of {files.files} files ({len(files.holding_secrets)} hold them, all 0600)"
                if not files.misplaced else f"{len(files.misplaced)}: {'; '.join(files.misplaced)[:300]}",
                "0", not files.misplaced)
    figures.add("R6", "refused configs whose error names the option", f"{len(world.refused()) - len(unnamed)} of "
                f"{len(world.refused())}", "all", not unnamed)
    assert not scan.hits, scan.summary()
    assert not files.misplaced, "\n".join(files.misplaced)
    assert not unnamed, unnamed
    assert files.holding_secrets, "the shipper's configs should have been among the files scanned"
    assert not world.untrusted.requests and not world.forbidding.docs()


# ---------------------------------------------------------------------------------------------------------- TLS


@dataclass
class TlsWorld:
    untrusted: EsStandin  # signed by a CA the plugin is not told about
    misnamed: EsStandin  # its certificate names es.invalid, not 127.0.0.1
    misnamed_ca: Path
    trusted: EsStandin  # the right CA is given
    insecure: EsStandin  # ssl.verification_mode=none; its first bulk requests answer 503


@pytest.fixture
def tls_world(tls: TlsFiles, tmp_path: Path) -> Iterator[TlsWorld]:
    other_name = make_tls_files(tmp_path, hostnames=("es.invalid",), prefix="elsewhere")
    with (EsStandin(tls=tls) as untrusted, EsStandin(tls=other_name) as misnamed, EsStandin(tls=tls) as trusted,
          EsStandin(tls=tls) as insecure):
        insecure.fail_next(503, 3, path="_bulk")
        yield TlsWorld(untrusted, misnamed, other_name.ca_cert, trusted, insecure)


def problem_lines(log_text: str, needle: str) -> list[str]:
    """The WARNING and ERROR lines of the plugin's log that mention ``needle``."""
    return [line for line in log_text.splitlines() if needle in line and line.startswith(("WARNING", "ERROR"))]


def failed_attempts(plugin: RunningPlugin, url: str) -> int:
    return sum(o["request_errors_total"] for o in outputs(plugin) if o["output"].startswith(url))


def docs_of(es: EsStandin, lg: FakeLogger) -> list[dict[str, Any]]:
    return [d for d in es.docs(INDEX) if d["container"]["id"] == lg.container_id]


def test_tls_is_verified_by_default_and_failures_are_loud_once(short_tmp: Path, tls: TlsFiles, tls_world: TlsWorld,
                                                               figures: FigureTable) -> None:
    w = tls_world
    # LOG_LEVEL=info, the default: what an operator sees.
    plugin = start_plugin(short_tmp, env={"LOG_LEVEL": "info"})
    try:
        unknown_ca = start_loggers(plugin, {"unknown CA": {"hosts": w.untrusted.url}})
        wrong_name = start_loggers(plugin, {"wrong name": {"hosts": w.misnamed.url,
                                                           "ssl.certificate_authorities": str(w.misnamed_ca)}})
        right_ca = start_loggers(plugin, {"right CA": {"hosts": w.trusted.url,
                                                       "ssl.certificate_authorities": str(tls.ca_cert)}})
        # Several containers on one output, and one with other bulk settings: the same connection config twice.
        unverified = {"hosts": w.insecure.url, "ssl.verification_mode": "none"}
        insecure = start_loggers(plugin, {f"insecure {i}": unverified for i in range(3)})
        insecure.update(start_loggers(plugin, {"insecure slow": {**unverified, "bulk_max_size": "7"}}))

        wait_until(lambda: len(w.trusted.docs(INDEX)) == 2, 20, message="the right CA's lines indexed")
        wait_until(lambda: len(w.insecure.docs(INDEX)) == 2 * len(insecure), 20,
                   message="the unverified containers' lines indexed after the 503s")
        for lg in insecure.values():  # more requests on the unverified outputs
            lg.write(entry(b"after the retries"))
        wait_until(lambda: len(w.insecure.docs(INDEX)) == 3 * len(insecure), 20, message="the later lines indexed")
        wait_until(lambda: min(failed_attempts(plugin, w.untrusted.url), failed_attempts(plugin, w.misnamed.url))
                   >= RETRY_CYCLES, 30, message=f"both broken outputs failing {RETRY_CYCLES} times")
        attempts = {url: failed_attempts(plugin, url) for url in (w.untrusted.url, w.misnamed.url)}
        stop_plugin(plugin)
    finally:
        if plugin.proc.poll() is None:
            plugin.stop()
    log_text = plugin.log_text()

    unknown_lines = problem_lines(log_text, w.untrusted.url)
    wrong_name_lines = problem_lines(log_text, w.misnamed.url)
    warnings = [line for line in log_text.splitlines() if "not verified" in line]
    retried_503 = sum(1 for r in w.insecure.bulk_requests if r.status == 503)
    figures.add("R6", "TLS, unknown CA (default verification): error lines logged / failed attempts; "
                "requests reaching Elasticsearch", f"{len(unknown_lines)} / {attempts[w.untrusted.url]}; "
                f"{len(w.untrusted.requests)}", "1 line; 0", len(unknown_lines) == 1 and not w.untrusted.requests)
    figures.add("R6", "TLS, certificate for another name: error lines logged / failed attempts; requests reaching "
                "Elasticsearch", f"{len(wrong_name_lines)} / {attempts[w.misnamed.url]}; {len(w.misnamed.requests)}",
                "1 line; 0", len(wrong_name_lines) == 1 and not w.misnamed.requests)
    figures.add("R6", "TLS, the right CA in ssl.certificate_authorities: lines indexed",
                f"{len(docs_of(w.trusted, right_ca['right CA']))} of 2", "all", len(w.trusted.docs(INDEX)) == 2)
    figures.add("R6", f"ssl.verification_mode=none, {len(insecure)} containers on 2 bulk outputs, "
                f"{retried_503} bulk requests answered 503: warnings logged", len(warnings), "1", len(warnings) == 1)

    assert len(unknown_lines) == 1, unknown_lines
    assert "certificate verify failed: unable to get local issuer certificate" in unknown_lines[0]
    assert "ssl.certificate_authorities" in unknown_lines[0]
    assert len(wrong_name_lines) == 1, wrong_name_lines
    assert "mismatch, certificate is not valid for '127.0.0.1'" in wrong_name_lines[0]
    assert not w.untrusted.requests and not w.misnamed.requests
    assert not docs_of(w.untrusted, unknown_ca["unknown CA"]) and not docs_of(w.misnamed, wrong_name["wrong name"])
    assert len(docs_of(w.trusted, right_ca["right CA"])) == 2
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("WARNING") and w.insecure.url in warnings[0]
    assert retried_503 == 3
