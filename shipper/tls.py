"""TLS for the Elasticsearch clients: the ``ssl.*`` options read safely, and the client's ``SSLContext``.

The plugin runs as root and sees its whole mount namespace, and the ``ssl.*`` paths come from whoever may run a
container. So a path is only ever read as one regular file (not through a final symlink, never a device or a
FIFO, at most 4 MiB), read once into memory (OpenSSL later reads our private copy, not the path again), and every
refusal has the same wording: an error must not tell whether some file exists or what it holds.
"""

from __future__ import annotations

import os
import ssl
import stat
import tempfile

from proto.options import LogOptionError

PEM_MARK = "-----BEGIN "
# A CA bundle is a few hundred KiB at most; the cap keeps a wrong path (a log file, a device) from filling memory.
MAX_PEM_FILE = 4 << 20


class OutputConfigError(LogOptionError):
    """An output option that cannot work; the message names the option and never holds a secret."""


def pem_text(option: str, value: str | None) -> str | None:
    """Inline PEM as given, or the text of the file a path names; ``OutputConfigError`` naming the option."""
    if value is None or PEM_MARK in value:
        return value
    data = _read_regular_file(value)
    if data is None:
        raise OutputConfigError(f"log-opt {option!r}: cannot use the path given: it must name a regular file the "
                                f"plugin can read, of at most {MAX_PEM_FILE >> 20} MiB, and not a link, a device "
                                "or a FIFO")
    return data.decode("ascii", errors="replace")


def _read_regular_file(path: str) -> bytes | None:
    """The content of ``path`` if it is a regular file (not a final symlink) of at most MAX_PEM_FILE; else None."""
    try:
        # O_NOFOLLOW: a link could point anywhere; O_NONBLOCK: opening a FIFO must not hang StartLogging (and with
        # it the plugin's API); O_NOCTTY: a terminal must not become ours.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        # A device such as /dev/zero would be read for ever; a directory cannot be read at all.
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PEM_FILE:
            return None
        data = _read_at_most(fd, MAX_PEM_FILE + 1)
        return data if len(data) <= MAX_PEM_FILE else None  # it grew since fstat
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := os.read(fd, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def make_ssl_context(verification_mode: str, ca_certs: str | None, client_cert: str | None,
                     client_key: str | None) -> ssl.SSLContext:
    """The client's TLS context; ``OutputConfigError`` naming a bad option. PEM arguments are text."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if verification_mode == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        # "certificate": the chain must lead to a trusted CA, but the name in it may differ from the host.
        context.check_hostname = verification_mode == "full"
        context.verify_mode = ssl.CERT_REQUIRED
    if ca_certs is not None:
        # Like Beats: given CAs replace the system store (a private CA should not widen to every public one).
        try:
            context.load_verify_locations(cadata=ca_certs)
        except (ssl.SSLError, ValueError) as exc:
            raise OutputConfigError(f"log-opt 'ssl.certificate_authorities': no usable PEM certificate ({_why(exc)})"
                                    ) from None
    else:
        context.load_default_certs()
    if client_cert is not None and client_key is not None:
        _load_client_cert(context, client_cert, client_key)
    return context


def _load_client_cert(context: ssl.SSLContext, cert: str, key: str) -> None:
    # ssl loads certificates only from files: the PEM text goes through private temporary files (0600, in a
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


def _materialise(text: str, path: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return path


def _why(exc: BaseException) -> str:
    # OpenSSL's reason code (e.g. KEY_VALUES_MISMATCH) helps and never holds key material.
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else type(exc).__name__
