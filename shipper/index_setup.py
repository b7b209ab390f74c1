"""Index template and ILM policy of a custom ``index``, installed once per output (Beats' ``setup.template.*`` and
``setup.ilm.*``).

A data stream matching ``logs-*-*`` (the default, ``logs-docker-default``) gets Elasticsearch's built-in template
and lifecycle: nothing is installed for it. A custom index (``docker-%{+yyyy.MM.dd}``) would otherwise get dynamic
mappings (``message`` as text plus a keyword, ``@timestamp`` at millisecond precision) and no lifecycle, so:

* ``setup.template.enabled`` (default true): a composable template (``PUT _index_template/<name>?create=true``, so
  one an admin put or changed is never replaced) with ECS mappings for every field the plugin writes, for
  ``setup.template.pattern``; when another template of the same priority covers those indices, Elasticsearch
  refuses ours and that template is left to govern them;
* ``setup.ilm.enabled`` (default false): an ILM policy ``setup.ilm.policy_name`` with Beats' default rollover
  (50 GB primary shard or 30 days), put only if absent; the template then declares a data stream, which ILM rolls
  over (as Beats 8 does: ``setup.ilm.rollover_alias`` and ``pattern`` are gone with 8.0), and the index must not
  hold a date (the rollover replaces it).

:class:`IndexSetups` runs each (client, setup) once, before any line of its containers is sent (an index created
first would keep dynamic mappings until the next day or rollover); a failure is retried with back-off, logged
once, counted, and after ``SETUP_WAIT`` seconds the containers ship anyway, so a missing privilege never stops
the logs.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError, NotFoundError

from proto.options import LogOptionError
from shipper.index_names import IndexTemplate

log = logging.getLogger("elp.shipper")

SETUP_WAIT = 30.0  # seconds a container's lines wait for its index setup before they ship without it
TEMPLATE_PRIORITY = 150  # above the built-in logs-*-* (100), as Beats' templates
ROLLOVER = {"max_primary_shard_size": "50gb", "max_age": "30d"}  # Beats' default policy
_KEYWORD = {"type": "keyword", "ignore_above": 1024}
# Elasticsearch's refusal of a template whose patterns overlap another's of the same priority.
_SAME_PRIORITY = "multiple index templates may not match during index creation"

# ECS types of every field shipper/documents.py writes (ECS 8: message is match_only_text, container.labels an
# object of keywords). @timestamp is date_nanos: the documents carry nanoseconds and the order of lines in one
# millisecond would be lost with date.
MAPPINGS: dict[str, Any] = {
    "dynamic_templates": [{"strings_as_keyword": {"match_mapping_type": "string", "mapping": _KEYWORD}}],
    "properties": {
        "@timestamp": {"type": "date_nanos"},
        "message": {"type": "match_only_text"},
        "stream": _KEYWORD,
        "tags": _KEYWORD,
        "log": {"properties": {"flags": _KEYWORD}},
        "container": {"properties": {
            "id": _KEYWORD, "name": _KEYWORD,
            "image": {"properties": {"name": _KEYWORD, "tag": _KEYWORD, "hash": {"properties": {"all": _KEYWORD}}}},
            "labels": {"type": "object"}, "env": {"type": "object"},
        }},
        "host": {"properties": {"name": _KEYWORD}},
        "agent": {"properties": {name: _KEYWORD for name in ("type", "name", "version", "id", "ephemeral_id")}},
        "ecs": {"properties": {"version": _KEYWORD}},
    },
}


@dataclass(frozen=True)
class IndexSetup:
    """What to install for one custom index."""

    template_name: str
    pattern: str
    policy_name: str | None  # with setup.ilm.enabled

    def template_body(self, version: str) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        body: dict[str, Any] = {"index_patterns": [self.pattern], "priority": TEMPLATE_PRIORITY,
                                "_meta": {"managed_by": "elastic-logging-plugin", "version": version}}
        if self.policy_name is not None:
            settings["index"] = {"lifecycle": {"name": self.policy_name}}
            body["data_stream"] = {}
        body["template"] = {"settings": settings, "mappings": MAPPINGS}
        return body

    @staticmethod
    def policy_body() -> dict[str, Any]:
        return {"phases": {"hot": {"min_age": "0ms", "actions": {"rollover": dict(ROLLOVER)}}},
                "_meta": {"managed_by": "elastic-logging-plugin"}}


def index_setup(options: Mapping[str, Any]) -> IndexSetup | None:
    """The setup for ``LogOptions.values``; None when nothing is installed. Raises ``LogOptionError`` naming the
    option for a setup that cannot work (checked at StartLogging)."""
    index = IndexTemplate(str(options["index"]))
    if index.is_data_stream or not options.get("setup.template.enabled", True):
        if options.get("setup.ilm.enabled") and not index.is_data_stream:
            raise LogOptionError("log-opt 'setup.ilm.enabled' needs 'setup.template.enabled' (the template is what "
                                 "gives the index its policy)")
        return None
    prefix = str(options["index"]).split("%{", 1)[0]
    name = options.get("setup.template.name") or prefix.rstrip("-_.")
    pattern = options.get("setup.template.pattern") or (prefix + "*" if prefix else "")
    if not name or not pattern:
        raise LogOptionError("log-opt 'index' starts with a %{...} reference: give 'setup.template.name' and "
                             "'setup.template.pattern' (or setup.template.enabled=false)")
    if pattern != pattern.lower():
        raise LogOptionError(f"log-opt 'setup.template.pattern': {pattern!r} must be lower case, as index names")
    _check_name("setup.template.name", name)
    policy = None
    if options.get("setup.ilm.enabled"):
        if index.has_date:
            raise LogOptionError("log-opt 'setup.ilm.enabled': the index rolls over by size and age, so 'index' "
                                 f"must hold no date ({str(options['index'])!r})")
        policy = str(options.get("setup.ilm.policy_name") or "elastic-logging-plugin")
        _check_name("setup.ilm.policy_name", policy)
    return IndexSetup(name, pattern, policy)


# What Elasticsearch refuses in an index template's or an ILM policy's name (MetadataIndexTemplateService and
# LifecyclePolicy validation): upper case, a leading "_", and these characters.
_BAD_NAME_CHARS = frozenset(' \t\n\\/*?"<>|,#')


def _check_name(option: str, name: str) -> None:
    bad = sorted(_BAD_NAME_CHARS & set(name))
    if name != name.lower() or name.startswith("_") or bad:
        raise LogOptionError(f"log-opt {option!r}: {name[:100]!r} is not a name Elasticsearch accepts (lower case, "
                             "not starting with '_', none of the characters space \\ / * ? \" < > | , #)")


def check_pattern(setup: IndexSetup | None, index_name: str) -> None:
    """Raise ``LogOptionError`` when the template would not apply to the container's index."""
    if setup is not None and not fnmatch.fnmatchcase(index_name, setup.pattern):
        raise LogOptionError(f"log-opt 'setup.template.pattern': {setup.pattern!r} does not match the index "
                             f"{index_name!r}, so the template would never apply")


@dataclass
class _Run:
    client: AsyncElasticsearch
    setup: IndexSetup
    started: float
    done: bool = False
    failures: int = 0
    last_error: str = ""
    task: asyncio.Task[None] | None = None
    containers: set[str] = field(default_factory=set)


class IndexSetups:
    """Every output's setups: one run per (client, setup), whatever the number of containers or bulks."""

    def __init__(self, version: str, on_ready: Callable[[], None], wait: float = SETUP_WAIT) -> None:
        self.version = version
        self.on_ready = on_ready  # called once a setup is done or its wait is over: its containers may ship
        self.wait = wait
        self.runs: dict[tuple[int, IndexSetup], _Run] = {}
        self.by_container: dict[str, _Run] = {}
        self.failures_total = 0
        self.installed_total = 0  # templates and policies put (absent before)

    def ensure(self, container_id: str, client: AsyncElasticsearch, setup: IndexSetup | None,
               backoff: tuple[float, float]) -> None:
        old = self.by_container.pop(container_id, None)
        if old is not None:
            old.containers.discard(container_id)
        if setup is None:
            return
        key = (id(client), setup)
        run = self.runs.get(key)
        if run is None:
            run = self.runs[key] = _Run(client, setup, time.monotonic())
            run.task = asyncio.get_running_loop().create_task(self._install(run, *backoff))
        run.containers.add(container_id)
        self.by_container[container_id] = run

    def ready(self, container_id: str) -> bool:
        run = self.by_container.get(container_id)
        return run is None or run.done or time.monotonic() - run.started >= self.wait

    def forget(self, container_id: str) -> None:
        run = self.by_container.pop(container_id, None)
        if run is not None:
            run.containers.discard(container_id)

    def stats(self) -> dict[str, int]:
        return {"index_setups_pending": sum(not r.done for r in self.runs.values()),
                "index_setup_failures_total": self.failures_total,
                "index_setup_installed_total": self.installed_total}

    async def close(self) -> None:
        tasks = [r.task for r in self.runs.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _install(self, run: _Run, backoff_init: float, backoff_max: float) -> None:
        delay = backoff_init
        timer = asyncio.get_running_loop().call_later(self.wait, self._waited, run)
        while True:
            try:
                await self._put_if_absent(run)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: retried, never fatal to shipping
                run.failures += 1
                self.failures_total += 1
                text = f"{type(exc).__name__}: {exc}"[:300]
                if run.failures == 1 or text != run.last_error:
                    log.error("index template %r (pattern %r%s): cannot install it: %s; retrying with back-off%s",
                              run.setup.template_name, run.setup.pattern,
                              f", ILM policy {run.setup.policy_name!r}" if run.setup.policy_name else "", text,
                              "" if run.failures > 1 else f" (lines wait for it at most {self.wait:g} s)")
                run.last_error = text
                await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: not every shipper at once
                delay = min(backoff_max, delay * 2)
        timer.cancel()
        run.done = True
        if run.failures:
            log.info("index template %r installed after %d failures", run.setup.template_name, run.failures)
        self.on_ready()

    def _waited(self, run: _Run) -> None:
        if not run.done:
            log.warning("index template %r is still not installed after %g s: containers %s ship without it (it "
                        "applies from the next index created)", run.setup.template_name, self.wait,
                        ",".join(sorted(c[:12] for c in run.containers)))
            self.on_ready()

    async def _put_if_absent(self, run: _Run) -> None:
        client, setup = run.client, run.setup
        if setup.policy_name is not None:
            try:
                await client.ilm.get_lifecycle(name=setup.policy_name)
            except NotFoundError:
                await client.ilm.put_lifecycle(name=setup.policy_name, policy=setup.policy_body())
                self.installed_total += 1
                log.info("ILM policy %r installed", setup.policy_name)
        if (await client.indices.exists_index_template(name=setup.template_name)).body:
            return
        body = setup.template_body(self.version)
        try:
            await client.indices.put_index_template(
                name=setup.template_name, create=True, index_patterns=body["index_patterns"],
                priority=body["priority"], template=body["template"], data_stream=body.get("data_stream"),
                meta=body["_meta"])
        except BadRequestError as exc:
            if _already_there(exc, setup.template_name):
                # Put between our look and our put, by another shipper (SHIPPERS > 1) or another host: as wanted.
                log.info("index template %r was installed meanwhile (by another shipper or host)", setup.template_name)
                return
            if _SAME_PRIORITY not in str(exc):
                raise
            # Another template of our priority covers these indices (an admin's): it governs them, left as it is.
            log.warning("index template %r not installed: %s; the indices keep that template",
                        setup.template_name, str(exc)[:300])
            return
        self.installed_total += 1
        log.info("index template %r installed for %r", setup.template_name, setup.pattern)


def _already_there(exc: BadRequestError, name: str) -> bool:
    """ES's answer to ``create=true`` when the template exists (MetadataIndexTemplateService)."""
    return f"index template [{name}] already exists" in str(exc)
