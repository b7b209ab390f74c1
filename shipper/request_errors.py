"""What a failed request to Elasticsearch says, for the shipper's decisions and its log (never a credential)."""

from __future__ import annotations

import aiohttp
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import TlsError, TransportError
from elasticsearch import ApiError

from proto.options import without_credentials


def closed_while_sending(exc: TransportConnectionError) -> bool:
    """The connection was open and the server dropped it (reset, closed, broken pipe): not a refused connection,
    a name that does not resolve, or TLS."""
    if isinstance(exc, TlsError):
        return False
    cause = cause_of(exc)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return False
    return isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | aiohttp.ClientPayloadError
                      | ConnectionError)


def cause_of(exc: TransportError) -> BaseException | None:
    """The aiohttp error behind a transport error: the node raises its own error ``from None`` (the cause stays
    in ``__context__``), and the transport overwrites ``errors`` with those of earlier attempts (none here)."""
    return exc.errors[0] if exc.errors else exc.__context__


def api_reason(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error_type = body["error"].get("type", "")
        return short(str(error_type), 80)
    return ""


def transport_error(exc: TransportError) -> str:
    """What went wrong, for the log: elastic-transport's ``str()`` is only "TLS error" or "Connection error"; the
    cause (e.g. "certificate verify failed: unable to get local issuer certificate") is in ``message``."""
    detail = exc.message if isinstance(exc.message, str) and exc.message else str(exc)
    text = f"{type(exc).__name__}: {short(without_credentials(detail), 400)}"
    if isinstance(exc, TlsError) and "CERTIFICATE_VERIFY_FAILED" in detail:
        text += ("; the server's certificate is not trusted: give its CA in log-opt 'ssl.certificate_authorities' "
                 "and connect by a name the certificate holds")
    return text


def short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
