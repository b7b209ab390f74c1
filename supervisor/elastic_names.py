"""Elastic's log-opt names, accepted with their meaning so a ``daemon.json`` written for Elastic's plugin works.

Elastic's plugin took two spellings over its life (``docs/migrating-from-elastic.md`` has the table):

- 7.6 to 7.8 passed every log-opt to libbeat as a config key, so its docs show libbeat's names:
  ``output.elasticsearch.hosts``, ``output.elasticsearch.username``, ``cloud.id``, ... (values were read as YAML,
  so a list could also be written ``["a:9200", "b:9200"]``);
- 7.9 on (``x-pack/dockerlogbeat/pipelinemanager/config.go: NewCfgFromRaw``) reads short names, most of which are
  ours too (``hosts``, ``user``, ``cloud_id``, ...); 7.9/7.10 also had ``endpoint``, ``template_name`` and
  ``template_pattern``.

:func:`to_our_names` rewrites the aliases to our names before validation; an option given twice (an alias and
our name, or two aliases) is refused naming both. :func:`respelled` puts the name the user wrote back into an
error about the option, so they are never told about a name they did not write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proto.options import LogOptionError

_ES = "output.elasticsearch."

# alias -> our name. Values keep their meaning and syntax (durations, sizes, comma lists) unless said otherwise.
ALIASES: dict[str, str] = {
    _ES + "hosts": "hosts",
    _ES + "username": "user",
    _ES + "password": "password",
    _ES + "api_key": "api_key",
    _ES + "index": "index",
    _ES + "pipeline": "pipeline",
    _ES + "timeout": "timeout",
    _ES + "backoff.init": "backoff_init",
    _ES + "backoff.max": "backoff_max",
    _ES + "max_retries": "max_retries",
    _ES + "bulk_max_size": "bulk_max_size",
    _ES + "compression_level": "compression_level",
    _ES + "proxy_url": "proxy_url",
    _ES + "ssl.certificate_authorities": "ssl.certificate_authorities",
    _ES + "ssl.verification_mode": "ssl.verification_mode",
    _ES + "ssl.certificate": "ssl.certificate",
    _ES + "ssl.key": "ssl.key",
    "cloud.id": "cloud_id",
    "cloud.auth": "cloud_auth",
    "template_name": "setup.template.name",  # 7.9/7.10 (config.go required them with index)
    "template_pattern": "setup.template.pattern",
}

# libbeat options that change how hosts are read; folded into ``hosts`` (a host without a scheme or path).
_PROTOCOL = _ES + "protocol"
_PATH = _ES + "path"

# libbeat output options with nothing to tune here, accepted so a copied daemon.json keeps working: the value is
# checked, then dropped. option -> (accepted values, why it needs nothing).
ACCEPTED_NO_EFFECT: dict[str, tuple[frozenset[str] | None, str]] = {
    _ES + "worker": (None, "the shipper sends concurrently on its own (up to 2 connections per node)"),
    _ES + "loadbalance": (frozenset({"true", "false"}), "requests are always spread over every host, and a host "
                                                        "that fails is skipped until it answers again"),
    _ES + "escape_html": (frozenset({"false"}), "documents never escape HTML (libbeat's default, false)"),
    _ES + "ssl.enabled": (frozenset({"true"}), "TLS is used for every https:// host, verified by default"),
}

# libbeat and Beats options Elastic's plugin took (7.x passed every log-opt to libbeat) that this plugin refuses,
# with the reason given in the error.
NOT_SUPPORTED: dict[str, str] = {
    _ES + "headers": "no custom HTTP headers are sent",
    _ES + "parameters": "no custom query parameters are sent",
    _ES + "indices": "no conditional indices; use one index with %{[field]} references",
    _ES + "pipelines": "no conditional pipelines; use one pipeline with %{[field]} references",
    _ES + "ssl.key_passphrase": "an encrypted client key is not supported; give the key unencrypted (ssl.key, a "
                                "file only root can read)",
    _ES + "ssl.supported_protocols": "TLS versions are Python's defaults (TLS 1.2 and 1.3)",
    _ES + "ssl.cipher_suites": "cipher suites are OpenSSL's defaults",
    # Beats 7.x's ILM names, gone in Beats 8 (data streams replaced the rollover alias).
    "setup.ilm.rollover_alias": "Beats 8 replaced the rollover alias by a data stream: give setup.ilm.enabled=true "
                                "and the index becomes a data stream that the policy rolls over",
    "setup.ilm.pattern": "Beats 8 replaced the rollover alias by a data stream: give setup.ilm.enabled=true",
    "setup.ilm.policy_file": "a policy file is not supported (the plugin has no files of yours); put your policy "
                             "in Elasticsearch under setup.ilm.policy_name: an existing policy is never replaced",
    "setup.ilm.overwrite": "existing policies are never replaced; delete it in Elasticsearch to have it put again",
    "setup.template.overwrite": "existing templates are never replaced; delete it in Elasticsearch to have it put "
                                "again",
}

# Our options that are the same option as one of ours under another name (the option parser copies it).
_SAME_AS = {"endpoint": "hosts"}

_LIST_OPTIONS = {"hosts"}


def to_our_names(config: Any) -> tuple[Any, dict[str, str]]:
    """``Info.Config`` with Elastic's names rewritten to ours, and {our name: the name given} for what was
    rewritten. Anything that is not a mapping is returned as it is (the option parser refuses it)."""
    if not isinstance(config, Mapping):
        return config, {}
    raw = dict(config)
    _check_not_supported(raw)
    spelled: dict[str, str] = {}
    given: dict[str, str] = {}  # canonical name -> the first name found for it
    for name in sorted(raw):
        ours = ALIASES.get(name, name)
        canonical = _SAME_AS.get(ours, ours)
        if canonical in given:
            raise LogOptionError(f"log-opts {given[canonical]!r} and {name!r} are the same option; give only one")
        given[canonical] = name
    out: dict[str, Any] = {}
    for name, value in raw.items():
        ours = ALIASES.get(name)
        if ours is None:
            out[name] = value
            continue
        if ours in _LIST_OPTIONS and isinstance(value, str):
            value = _flow_list(value)
        out[ours] = value
        spelled[ours] = name
    _fold_protocol_and_path(out, spelled)
    proxy = out.get("proxy_url")
    if isinstance(proxy, str) and proxy.strip() and "://" not in proxy:
        out["proxy_url"] = "http://" + proxy.strip()  # libbeat: "a host[:port], in which case http is assumed"
    return out, spelled


def respelled(exc: LogOptionError, spelled: Mapping[str, str]) -> LogOptionError:
    """``exc`` with our option names replaced by the names the user gave."""
    text = str(exc)
    for ours, given in spelled.items():
        text = text.replace(repr(ours), repr(given))
    return LogOptionError(text)


def _check_not_supported(raw: dict[str, Any]) -> None:
    for name in sorted(raw):
        if name in NOT_SUPPORTED:
            raise LogOptionError(f"log-opt {name!r} is not supported here: {NOT_SUPPORTED[name]}")
        if name in ACCEPTED_NO_EFFECT:
            accepted, _ = ACCEPTED_NO_EFFECT[name]
            value = raw.pop(name)
            text = value.strip().lower() if isinstance(value, str) else None
            if text is None or (accepted is None and not text.isdigit()) or (accepted and text not in accepted):
                choices = "a whole number" if accepted is None else " or ".join(sorted(accepted))
                raise LogOptionError(f"log-opt {name!r}: must be {choices} (Elastic's plugin option; it needs no "
                                     f"setting here: {ACCEPTED_NO_EFFECT[name][1]})")


def _flow_list(value: str) -> str:
    """libbeat read log-opt values as YAML: ``["a:9200", 'b:9200']`` -> ``a:9200,b:9200`` (our comma list)."""
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return value
    items = (item.strip().strip("\"'").strip() for item in text[1:-1].split(","))
    return ",".join(item for item in items if item)


def _fold_protocol_and_path(out: dict[str, Any], spelled: dict[str, str]) -> None:
    """libbeat's ``protocol`` and ``path`` apply to hosts given without a scheme / without a path."""
    protocol, path = out.pop(_PROTOCOL, None), out.pop(_PATH, None)
    if protocol is None and path is None:
        return
    if protocol is not None and protocol not in {"http", "https"}:
        raise LogOptionError(f"log-opt {_PROTOCOL!r}: must be http or https")
    if path is not None and not isinstance(path, str):
        raise LogOptionError(f"log-opt {_PATH!r} must be a string")
    host_name = "endpoint" if "endpoint" in out else "hosts"
    hosts = out.get(host_name)
    if not isinstance(hosts, str) or not hosts.strip():
        given = _PROTOCOL if protocol is not None else _PATH
        raise LogOptionError(f"log-opt {given!r} needs hosts (log-opt 'hosts' or {_ES + 'hosts'!r})")
    rewritten = []
    for host in (h.strip() for h in hosts.split(",") if h.strip()):
        scheme, sep, rest = host.partition("://")
        if not sep:
            scheme, rest = protocol or "http", host
        if path and "/" not in rest:
            rest = rest + "/" + path.strip("/")
        rewritten.append(f"{scheme}://{rest}")
    out[host_name] = ",".join(rewritten)
