"""Elasticsearch outputs: one ``OutputConfig`` per distinct set of connection options, one client per config.

``output_config`` normalises the options (hosts or cloud id, auth, TLS, proxy) into a frozen, hashable
``OutputConfig`` so that containers with the same options share one client. ``validate_output`` runs the same
checks at StartLogging, plus building the TLS context (bad PEM, unreadable files), without any network.

Secrets (password, API key, cloud_auth, client key, proxy credentials) stay out of ``repr`` and of every error
text and log line here; ``describe()`` is the redacted form for logs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import ssl
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import aiohttp
from elastic_transport import AiohttpHttpNode, NodeConfig
from elastic_transport.client_utils import parse_cloud_id
from elasticsearch import AsyncElasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from supervisor.logopts import LogOptionError, shown_value

log = logging.getLogger("elp.shipper")

DEFAULT_PORT = 9200
_PEM_MARK = "-----BEGIN "
# A CA bundle is a few hundred KiB at most; the cap keeps a wrong path (a log file, a device) from filling memory.
_MAX_PEM_FILE = 4 << 20
_PROXY_EXTRA = "elp.proxy_url"
_warned_insecure: set[OutputConfig] = set()
_warned_plain: set[OutputConfig] = set()


class OutputConfigError(LogOptionError):
    """An output option that cannot work; the message names the option and never holds a secret."""


@dataclass(frozen=True)
class OutputConfig:
    """Everything a client depends on. Equal configs share a client; secrets are kept out of ``repr``."""

    hosts: tuple[str, ...]  # normalised URLs: scheme://host:port[/path]
    timeout: float
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)  # base64 of "id:key", as sent after "ApiKey "
    cloud_id_name: str | None = None  # the deployment name of a cloud_id (for describe)
    proxy_url: str | None = field(default=None, repr=False)  # may carry user:password
    verification_mode: str = "full"
    ca_certs: str | None = field(default=None, repr=False)  # PEM text (read from the file when a path was given)
    client_cert: str | None = field(default=None, repr=False)  # PEM text or a path
    client_key: str | None = field(default=None, repr=False)  # PEM text or a path

    def describe(self) -> str:
        """A log-safe summary, e.g. ``https://es1:9200,https://es2:9200 as user elastic``."""
        text = ",".join(self.hosts)
        if self.cloud_id_name:
            text += f" (cloud {self.cloud_id_name})"
        if self.username is not None:
            text += f" as user {self.username}"
        elif self.api_key is not None:
            text += " with an API key"
        if self.proxy_url:
            text += f" via {_redact_url(self.proxy_url)}"
        if self.verification_mode != "full" and any(h.startswith("https:") for h in self.hosts):
            text += f" (TLS verification: {self.verification_mode})"
        return text


def output_config(options: Mapping[str, Any]) -> OutputConfig:
    """Build the ``OutputConfig`` of ``LogOptions.values``; raise ``OutputConfigError`` for what cannot work."""
    cloud_name = None
    if options.get("cloud_id"):
        cloud_name, hosts = _cloud_hosts(options["cloud_id"])
    else:
        # Name the option the user wrote: 'endpoint' is copied into 'hosts' by the option parser.
        host_option = "endpoint" if options.get("endpoint") else "hosts"
        hosts = tuple(_normalise_host(h, host_option) for h in options.get("hosts") or ())
    if not hosts:
        raise OutputConfigError("log-opt 'hosts' (or 'cloud_id') is needed to ship to Elasticsearch")
    username, password = options.get("user"), options.get("password")
    if username is not None and ":" in username:
        # Basic auth joins user:password and splits at the first ":": such a user would log in as someone else.
        raise OutputConfigError("log-opt 'user': must not contain ':'")
    if options.get("cloud_auth"):
        username, sep, password = str(options["cloud_auth"]).partition(":")
        if not sep or not username:
            raise OutputConfigError("log-opt 'cloud_auth': the value given is not user:password")
    api_key = _api_key(options["api_key"]) if options.get("api_key") else None
    return OutputConfig(
        hosts=hosts,
        timeout=float(90.0 if options.get("timeout") is None else options["timeout"]),
        username=username,
        password=password,
        api_key=api_key,
        cloud_id_name=cloud_name,
        proxy_url=_proxy(options.get("proxy_url")),
        verification_mode=options.get("ssl.verification_mode") or "full",
        ca_certs=_ca_text(options.get("ssl.certificate_authorities")),
        client_cert=_pem_or_path("ssl.certificate", options.get("ssl.certificate")),
        client_key=_pem_or_path("ssl.key", options.get("ssl.key")),
    )


def validate_output(options: Mapping[str, Any]) -> None:
    """Every check that needs no network, for StartLogging: hosts, cloud id, auth forms, CA/cert/key files, PEM."""
    config = output_config(options)
    ssl_context(config)


def make_client(config: OutputConfig) -> AsyncElasticsearch:
    """A client that never retries by itself (the shipper backs off) and balances over the hosts.

    With ``max_retries=0`` a request that fails on one node is not re-sent to another within the same call; the
    node is marked dead (skipped for 1 s, doubling up to 30 s) so the shipper's next try goes to another host.
    """
    context = ssl_context(config) if any(h.startswith("https:") for h in config.hosts) else None
    if config.verification_mode == "none" and context is not None and config not in _warned_insecure:
        _warned_insecure.add(config)
        log.warning("TLS certificates are not verified for %s (ssl.verification_mode=none): "
                    "anyone on the path can read and change the logs", config.describe())
    plain = [h for h in config.hosts if h.startswith("http:")]
    if plain and (config.username is not None or config.api_key is not None) and config not in _warned_plain:
        _warned_plain.add(config)
        log.warning("credentials for %s go over plain http:// to %s: anyone on the path can read them; use https://",
                    config.describe(), ",".join(plain))
    extras = {_PROXY_EXTRA: config.proxy_url} if config.proxy_url else {}
    nodes = []
    for url in config.hosts:
        parts = urlsplit(url)
        nodes.append(NodeConfig(
            scheme=parts.scheme, host=parts.hostname or "", port=parts.port or DEFAULT_PORT,
            path_prefix=parts.path, ssl_context=context if parts.scheme == "https" else None, _extras=extras,
        ))
    auth: dict[str, Any] = {}
    if config.username is not None:
        auth["basic_auth"] = (config.username, config.password or "")
    elif config.api_key is not None:
        auth["api_key"] = config.api_key
    return AsyncElasticsearch(
        nodes,
        node_class=_ProxyAwareNode if config.proxy_url else AiohttpHttpNode,
        request_timeout=config.timeout,
        max_retries=0,
        retry_on_status=(),
        retry_on_timeout=False,
        sniff_on_start=False,
        sniff_before_requests=False,
        sniff_on_node_failure=False,
        http_compress=False,  # the shipper gzips bodies itself at a fast level; the client's gzip is level 9
        serializers={
            **{mimetype: PreEncodedNdjson() for mimetype in _NDJSON_MIMETYPES},
            # Bulk answers carry one item per document: orjson parses them several times faster.
            **{mimetype: OrjsonSerializer() for mimetype in _JSON_MIMETYPES},
        },
        **auth,
    )


_NDJSON_MIMETYPES = ("application/x-ndjson", "application/vnd.elasticsearch+x-ndjson")
_JSON_MIMETYPES = ("application/json", "application/vnd.elasticsearch+json")


class PreEncodedNdjson(NdjsonSerializer):
    """Bulk bodies arrive already encoded (and often gzipped): send them untouched. The stock serializer would
    append a newline after the gzip trailer and corrupt the body."""

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes):
            return data
        return super().dumps(data)


def ssl_context(config: OutputConfig) -> ssl.SSLContext:
    """The client's TLS context for ``config.verification_mode``; ``OutputConfigError`` naming a bad option."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.verification_mode == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        # "certificate": the chain must lead to a trusted CA, but the name in it may differ from the host.
        context.check_hostname = config.verification_mode == "full"
        context.verify_mode = ssl.CERT_REQUIRED
    if config.ca_certs is not None:
        # Like Beats: given CAs replace the system store (a private CA should not widen to every public one).
        try:
            context.load_verify_locations(cadata=config.ca_certs)
        except (ssl.SSLError, ValueError) as exc:
            raise OutputConfigError(f"log-opt 'ssl.certificate_authorities': no usable PEM certificate ({_why(exc)})"
                                    ) from None
    else:
        context.load_default_certs()
    if config.client_cert is not None and config.client_key is not None:
        _load_client_cert(context, config.client_cert, config.client_key)
    return context


# ---------------------------------------------------------------------------------------------------- helpers


def _normalise_host(value: str, option: str = "hosts") -> str:
    """``host``, ``host:port`` or a URL -> ``scheme://host:port[/path]`` (http and port 9200 by default)."""
    text = value.strip()
    raw = text if "://" in text else f"http://{text}"
    try:
        parts = urlsplit(raw)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise OutputConfigError(f"log-opt {option!r}: {shown_value(text)!r} has a bad port") from None
    if parts.username is not None or parts.password is not None:
        raise OutputConfigError(f"log-opt {option!r}: put credentials in 'user' and 'password', not in the URL")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise OutputConfigError(f"log-opt {option!r}: {shown_value(text)!r} is not host:port or an http(s) URL")
    if parts.query or parts.fragment:
        # Not echoed: a query is where a careless URL carries a key (?api_key=...).
        raise OutputConfigError(f"log-opt {option!r}: {shown_value(text)!r}: a host URL must not have a query or "
                                "fragment (not shown)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit(SplitResult(parts.scheme, f"{host}:{port}", parts.path.rstrip("/"), "", ""))


def _cloud_hosts(cloud_id: str) -> tuple[str, tuple[str, ...]]:
    """``name:base64(host[:port]$es_uuid$kibana_uuid)`` -> https://es_uuid.host:port (443 by default).

    Decoded by elastic-transport's own ``parse_cloud_id`` so that we read ids exactly as the client does.
    """
    try:
        parsed = parse_cloud_id(cloud_id.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.es_address is None or not all(parsed.es_address):
        raise OutputConfigError("log-opt 'cloud_id': not an Elastic Cloud id (name:base64 of host$es$kibana)")
    host, port = parsed.es_address
    return parsed.cluster_name, (f"https://{host}:{port}",)


def _api_key(value: str) -> str:
    """``id:key`` is encoded; a value without ":" must already be base64 of ``id:key`` and is sent as is."""
    if ":" in value:
        return base64.b64encode(value.encode()).decode("ascii")
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if ":" not in decoded:
        raise OutputConfigError("log-opt 'api_key': the value given is neither id:key nor its base64 encoding")
    return value


def _proxy(value: str | None) -> str | None:
    if not value:
        return None
    if urlsplit(value).scheme not in {"http", "https"}:
        raise OutputConfigError("log-opt 'proxy_url': only http:// and https:// proxies are supported")
    return value


def _ca_text(value: str | None) -> str | None:
    if value is None:
        return None
    if _PEM_MARK in value:
        return value
    option = "ssl.certificate_authorities"
    try:
        # O_NONBLOCK: opening a FIFO must not hang StartLogging (and with it the plugin's API).
        fd = os.open(value, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise OutputConfigError(f"log-opt {option!r}: cannot read {value!r} ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        # A device such as /dev/zero would be read for ever; a directory cannot be read at all.
        if not stat.S_ISREG(info.st_mode):
            raise OutputConfigError(f"log-opt {option!r}: {value!r} is not a regular file")
        if info.st_size > _MAX_PEM_FILE:
            raise OutputConfigError(f"log-opt {option!r}: {value!r} is larger than {_MAX_PEM_FILE >> 20} MiB")
        return _read_at_most(fd, _MAX_PEM_FILE).decode("ascii", errors="replace")
    except OSError as exc:
        raise OutputConfigError(f"log-opt {option!r}: cannot read {value!r} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := os.read(fd, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _pem_or_path(option: str, value: str | None) -> str | None:
    """Inline PEM is kept as text; a path must be a readable file (named in the error, its content never)."""
    if value is None or _PEM_MARK in value:
        return value
    if not os.access(value, os.R_OK) or not os.path.isfile(value):
        shown = "the path given" if option == "ssl.key" else repr(value)
        raise OutputConfigError(f"log-opt {option!r}: cannot read {shown} (not a readable file)")
    return value


def _load_client_cert(context: ssl.SSLContext, cert: str, key: str) -> None:
    # ssl loads certificates only from files: inline PEM goes through private temporary files (0600, in a
    # 0700 directory) that are removed as soon as OpenSSL has read them.
    with tempfile.TemporaryDirectory(prefix="elp-tls-") as tmp:
        cert_path = _materialise(cert, os.path.join(tmp, "cert.pem"))
        key_path = _materialise(key, os.path.join(tmp, "key.pem"))
        try:
            # A password callback stops OpenSSL from prompting on a terminal for an encrypted key.
            context.load_cert_chain(cert_path, key_path, password=lambda: b"")
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise OutputConfigError("log-opts 'ssl.certificate'/'ssl.key': not a usable certificate and "
                                    f"unencrypted matching key ({_why(exc)})") from None


def _materialise(value: str, path: str) -> str:
    if _PEM_MARK not in value:
        return value
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(value)
    return path


def _why(exc: BaseException) -> str:
    # OpenSSL's reason code (e.g. KEY_VALUES_MISMATCH) helps and never holds key material.
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else type(exc).__name__


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<unparseable URL>"
    if "@" in parts.netloc:
        netloc = f"***@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


class _ProxyAwareNode(AiohttpHttpNode):
    """elastic-transport's aiohttp node cannot use a proxy; this one passes ``proxy_url`` to its session."""

    def _create_aiohttp_session(self) -> None:
        # The parent's session, rebuilt with the proxy (aiohttp >= 3.10 takes one per session). The parent
        # offers no hook for it; it only sets the attributes used here, before the first request.
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self.session = aiohttp.ClientSession(
            headers=self.headers,
            skip_auto_headers=("accept", "accept-encoding", "user-agent"),
            auto_decompress=True,
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit_per_host=self._connections_per_node, use_dns_cache=True,
                                           ssl=self._ssl_context or False),
            proxy=self.config._extras.get(_PROXY_EXTRA),
        )
