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
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import aiohttp
from elastic_transport import AiohttpHttpNode, NodeConfig
from elastic_transport.client_utils import parse_cloud_id
from elasticsearch import AsyncElasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from proto.options import shown_value
from shipper.bounded import BoundedResponse
from shipper.tls import OutputConfigError, make_ssl_context, pem_text

log = logging.getLogger("elp.shipper")

DEFAULT_PORT = 9200
_PROXY_EXTRA = "elp.proxy_url"
_HEADER_TIMEOUT_EXTRA = "elp.header_timeout"
MAX_CONNECTIONS_PER_NODE = 2
_warned_insecure: set[OutputConfig] = set()
_warned_plain: set[OutputConfig] = set()


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
    # PEM text, read from the file when a path was given (shipper/tls.py: regular files only, read once)
    ca_certs: str | None = field(default=None, repr=False)
    client_cert: str | None = field(default=None, repr=False)
    client_key: str | None = field(default=None, repr=False)

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
        timeout=_timeout(options.get("timeout")),
        username=username,
        password=password,
        api_key=api_key,
        cloud_id_name=cloud_name,
        proxy_url=_proxy(options.get("proxy_url")),
        verification_mode=options.get("ssl.verification_mode") or "full",
        ca_certs=pem_text("ssl.certificate_authorities", options.get("ssl.certificate_authorities")),
        client_cert=pem_text("ssl.certificate", options.get("ssl.certificate")),
        client_key=pem_text("ssl.key", options.get("ssl.key")),
    )


def validate_output(options: Mapping[str, Any]) -> None:
    """Every check that needs no network, for StartLogging: hosts, cloud id, auth forms, CA/cert/key files, PEM."""
    config = output_config(options)
    if config.ca_certs is not None or config.client_cert is not None or config.client_key is not None:
        # Only PEM the user gave can fail to load; the system store cannot, and loading it took 100+ ms of every
        # StartLogging of a shipping container (bench.start_logging).
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
    extras: dict[str, Any] = {_HEADER_TIMEOUT_EXTRA: config.timeout}
    if config.proxy_url:
        extras[_PROXY_EXTRA] = config.proxy_url
    nodes = []
    for url in config.hosts:
        parts = urlsplit(url)
        nodes.append(NodeConfig(
            scheme=parts.scheme, host=parts.hostname or "", port=parts.port or DEFAULT_PORT,
            path_prefix=parts.path, ssl_context=context if parts.scheme == "https" else None, _extras=extras,
            connections_per_node=MAX_CONNECTIONS_PER_NODE,
        ))
    auth: dict[str, Any] = {}
    if config.username is not None:
        auth["basic_auth"] = (config.username, config.password or "")
    elif config.api_key is not None:
        auth["api_key"] = config.api_key
    return AsyncElasticsearch(
        nodes,
        node_class=_Node,  # answers are read up to a cap (shipper/bounded.py)
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
    return make_ssl_context(config.verification_mode, config.ca_certs, config.client_cert, config.client_key)


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


def _timeout(value: float | None) -> float:
    if value is None:
        return 90.0
    if value <= 0:
        # aiohttp takes 0 as "no limit": a silent server would hold the output's only request for ever.
        raise OutputConfigError("log-opt 'timeout': must be more than 0 (a request needs a time limit)")
    return float(value)


def _proxy(value: str | None) -> str | None:
    if not value:
        return None
    if urlsplit(value).scheme not in {"http", "https"}:
        raise OutputConfigError("log-opt 'proxy_url': only http:// and https:// proxies are supported")
    return value


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<unparseable URL>"
    if "@" in parts.netloc:
        netloc = f"***@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def _headers_within(seconds: float) -> Any:
    """aiohttp client middleware: the response's headers must come within ``seconds`` of the request (connect,
    send and header read; the body is bounded by the request timeout). A server that accepts and stays silent
    costs a retry with back-off, never a connection held for ever."""

    async def middleware(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        async with asyncio.timeout(seconds):
            response: aiohttp.ClientResponse = await handler(request)
            return response

    return middleware


class _Node(AiohttpHttpNode):
    """elastic-transport's aiohttp node, with what its session lacks: a proxy (``proxy_url``), a bound on waiting
    for a response's headers, and a connection cap (one bulk request at a time per output: a few connections per
    node are plenty, aiohttp would open up to 100)."""

    def _create_aiohttp_session(self) -> None:
        # The parent's session, rebuilt (aiohttp >= 3.12: a proxy per session and client middlewares). The parent
        # offers no hook for it; it only sets the attributes used here, before the first request.
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        extras = self.config._extras
        self.session = aiohttp.ClientSession(
            headers=self.headers,
            skip_auto_headers=("accept", "accept-encoding", "user-agent"),
            auto_decompress=True,
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS_PER_NODE, limit_per_host=MAX_CONNECTIONS_PER_NODE,
                                           use_dns_cache=True, ssl=self._ssl_context or False),
            proxy=extras.get(_PROXY_EXTRA),
            response_class=BoundedResponse,
            middlewares=(_headers_within(float(extras[_HEADER_TIMEOUT_EXTRA])),),
        )
