"""The shipper process: pulls each shipping container's stored records, bulk-indexes them, acknowledges.

It keeps no line that the local store does not also keep: it fetches a container's records only while its
output has room, so a slow or absent Elasticsearch makes it fall behind, never lose, and never block a reader.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import zmq

from proto.control import ChannelClosed, ControlChannel
from proto.housekeeping import Periodic
from proto.messages import (
    Ack,
    ExitCode,
    Fetch,
    MessageError,
    Records,
    ShipContainer,
    decode,
)
from proto.paths import fetch_endpoint, is_container_id
from proto.shards import ONLY, Shard
from proto.statefile import StateFileError, read_bytes, read_json, write_json, write_text
from shipper.bulk import BulkShipper
from shipper.documents import kept_info
from shipper.encoder import Encoder, build_encoder, build_processor
from shipper.feed import ContainerFeed, PendingDoc
from shipper.index_setup import IndexSetups, index_setup
from shipper.json_lines import JsonConfig, JsonProblems
from shipper.output import OutputConfig, make_client, output_config
from shipper.stats import REASON_CHARS, REASONS_SHOWN, shipper_stats

__all__ = ["REASONS_SHOWN", "REASON_CHARS", "ShipperProcess"]

log = logging.getLogger("elp.shipper")

AGENT_ID_NAME = "agent-id"
FETCH_BYTES = 1 << 20
MAX_BACKLOG = 20_000  # documents of one container between fetch and acknowledgement
IDLE_REPOLL = 5.0  # a stopped container is asked again this often (it may start again)
# A fetch the local store has not answered for this long found nothing to read: only then may the wall clock end a
# multiline event (a busy or backed-up container's records decide by their own times; see shipper/processing.py).
QUIET_FETCH = 0.5
FETCH_TIMEOUT = 15.0  # the local store answers every fetch within 5 s, even empty
STATS_INTERVAL = 1.0
# Containers share a bulk output (one client, shared requests) only when these options agree too.
BULK_OPTIONS = ("bulk_max_size", "bulk_max_bytes", "flush_interval", "compression_level", "backoff_init",
                "backoff_max", "max_retries", "dead_letter_index")
OutputKey = tuple[OutputConfig, tuple[object, ...]]


class ShipperProcess:
    def __init__(self, data_dir: Path, control: socket.socket, shard: Shard = ONLY,
                 agent_id: str | None = None) -> None:
        self.data_dir = data_dir
        # With SHIPPERS > 1 this process ships only its share: the supervisor sends it only those containers, and
        # it resumes only those of the saved configs (another shipper resumes the rest).
        self.shard = shard
        self.control = ControlChannel(control, "shipper", log)
        self.config_dir = data_dir / "shipper"
        self.stop = asyncio.Event()
        self.booted = False  # True once its main loop runs: a failure before is a boot failure (spawn.run_child)
        self.feeds: dict[str, ContainerFeed] = {}
        self.feed_output: dict[str, OutputKey] = {}
        self.outputs: dict[OutputKey, BulkShipper] = {}
        self.idle_until: dict[str, float] = {}
        self.fetch_sent: dict[str, float] = {}
        self.ack_due: set[str] = set()
        self.json_problems: dict[str, JsonProblems | None] = {}
        self.feed_options: dict[str, dict[str, Any]] = {}
        self.acks_scheduled = False
        self.bad_messages = 0
        self.dealer: zmq.Socket
        # Given by the supervisor, which reads or makes it once: several shippers must not each make their own.
        self.agent_id = agent_id or load_agent_id(data_dir)
        self.ephemeral_id = str(uuid.uuid4())  # agent.ephemeral_id: new at each start, as libbeat's
        self.setups = IndexSetups(_version(), self._refetch_stalled)  # templates/ILM of custom indices
        self.housekeeping = Periodic(log, STATS_INTERVAL)
        self.housekeeping.add("re-fetching idle containers", self._refetch_idle)
        self.housekeeping.add("re-fetching stalled containers", self._refetch_stalled)
        self.housekeeping.add("reporting stats", self._send_stats)
        self.housekeeping.add("looking for missed records", self._on_records)  # backstop for a missed edge
        self.housekeeping.add("ending quiet multiline events", self._expire_events)

    async def run(self) -> ExitCode:
        _quiet_client_logs()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        ctx = zmq.Context(io_threads=1)
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.MAXMSGSIZE, FETCH_BYTES * 4)
        self.dealer.connect(fetch_endpoint(self.data_dir))
        dealer_fd = int(self.dealer.getsockopt(zmq.FD))
        loop.add_reader(dealer_fd, self._on_records)
        self.control.sock.setblocking(False)
        loop.add_reader(self.control.fileno(), self._on_control)
        for container_id, info, options in self._load_configs():
            self.ship(container_id, info, options)
        self.booted = True
        ticker = asyncio.create_task(self.housekeeping.run())
        await self.stop.wait()
        ticker.cancel()
        loop.remove_reader(dealer_fd)
        loop.remove_reader(self.control.fileno())
        for bulk in self.outputs.values():
            if bulk.task:
                bulk.task.cancel()
        await asyncio.gather(ticker, *(b.task for b in self.outputs.values() if b.task), return_exceptions=True)
        await self.setups.close()
        for bulk in self.outputs.values():
            await bulk.client.close()
        self._send_stats()
        self.dealer.close()
        ctx.term()
        return ExitCode.DONE

    # --- containers --------------------------------------------------------------------------------------

    def ship(self, container_id: str, info: dict[str, Any], options: dict[str, Any]) -> None:
        """Start (or update) shipping one container."""
        try:
            config = output_config(options)
            encoder = self._encoder(info, options)
            setup = index_setup(options)
            json_config = JsonConfig.from_options(options)
            problems = JsonProblems(container_id, json_config) if json_config else None
            processor = build_processor(info, options, socket.gethostname(), self.agent_id, _version(), problems,
                                        self.ephemeral_id)
        except ValueError as exc:
            log.error("container %s: cannot ship: %s", container_id[:12], exc)
            return
        key = (config, tuple(options[name] for name in BULK_OPTIONS))
        bulk = self.outputs.get(key)
        if bulk is None:
            bulk = BulkShipper(config.describe(), make_client(config), options, self._finished)
            bulk.start()
            self.outputs[key] = bulk
            log.info("shipping to %s", config.describe())
        feed = self.feeds.get(container_id)
        if feed is None:
            feed = ContainerFeed(container_id, encoder, processor=processor)
            self.feeds[container_id] = feed
        else:
            feed.encode = encoder
            if options != self.feed_options.get(container_id):
                # Other log-opts for a container already shipping (it was started again with them): its open
                # events are sent as they are, then the new settings apply. The same options again (the supervisor
                # sends them at each start of the shipper) keep the events being built.
                self._send(feed, feed.reconfigure(processor))
                self.json_problems[container_id] = problems
        if container_id not in self.json_problems:
            self.json_problems[container_id] = problems
        self.feed_options[container_id] = options
        self.feed_output[container_id] = key
        self.setups.ensure(container_id, bulk.client, setup, (options["backoff_init"], options["backoff_max"]))
        self.idle_until.pop(container_id, None)
        self._save_config(container_id, info, options)
        self._fetch(feed)

    def _encoder(self, info: dict[str, Any], options: dict[str, Any]) -> Encoder:
        return build_encoder(info, options, socket.gethostname(), self.agent_id, _version(), self.ephemeral_id)

    def _fetch(self, feed: ContainerFeed) -> None:
        if feed.fetching or feed.backlog >= MAX_BACKLOG or not self.setups.ready(feed.container_id):
            return
        bulk = self.outputs.get(self.feed_output.get(feed.container_id))  # type: ignore[arg-type]
        if bulk is None or bulk.full:
            return
        generation, offset = feed.next_pos if feed.next_pos else (-1, 0)
        try:
            self.dealer.send(Fetch(feed.container_id, generation, offset, FETCH_BYTES).encode(), zmq.NOBLOCK)
        except zmq.Again:
            return
        feed.fetching = True
        self.fetch_sent[feed.container_id] = time.monotonic()
        self._recheck()

    def _on_records(self) -> None:
        for _ in range(64):
            if not int(self.dealer.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                return
            raw = self.dealer.recv(zmq.NOBLOCK)
            try:
                msg = decode(raw)
            except MessageError as exc:
                self._bad_message(exc)
                continue
            if not isinstance(msg, Records):
                self._bad_message(MessageError(f"unexpected {type(msg).__name__} from the local store"))
                continue
            feed = self.feeds.get(msg.container_id)
            if feed is None:
                continue
            feed.fetching = False
            docs = feed.on_records(msg)
            if feed.advance() is not None:
                self.ack_due.add(feed.container_id)
                if not self.acks_scheduled:
                    self.acks_scheduled = True
                    asyncio.get_running_loop().call_soon(self._send_acks)
            if msg.skipped_files:
                log.error("container %s: %d rotated files were deleted before their lines were shipped; those "
                          "lines are lost to Elasticsearch (counted in stats)", feed.container_id[:12],
                          msg.skipped_files)
            bulk = self.outputs[self.feed_output[feed.container_id]]
            if docs:
                bulk.add(docs)
            if msg.stopped and not msg.records:
                self.idle_until[feed.container_id] = time.monotonic() + IDLE_REPOLL
                self._maybe_forget(feed)
            else:
                self._fetch(feed)
        asyncio.get_running_loop().call_soon(self._on_records)

    def _finished(self, doc: PendingDoc) -> None:
        feed = self.feeds.get(doc.container_id)
        if feed is None:
            return
        feed.mark_done(doc.end)  # _send_acks advances it, once per container and loop turn
        # One acknowledgement per container and loop turn, not one per document.
        self.ack_due.add(feed.container_id)
        if not self.acks_scheduled:
            self.acks_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_acks)

    def _send_acks(self) -> None:
        self.acks_scheduled = False
        due, self.ack_due = self.ack_due, set()
        for container_id in due:
            feed = self.feeds.get(container_id)
            if feed is None:
                continue
            feed.advance()
            if feed.acked is not None and feed.acked != feed.acked_sent:
                self._ack(feed, feed.acked)
                feed.acked_sent = feed.acked
            if container_id not in self.idle_until:
                self._fetch(feed)
            else:
                self._maybe_forget(feed)

    def _ack(self, feed: ContainerFeed, position: tuple[int, int] | None) -> None:
        if position is None:
            return
        try:
            self.dealer.send(Ack(feed.container_id, position[0], position[1]).encode(), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the next acknowledgement carries a later position
        self._recheck()

    def _recheck(self) -> None:
        """ZeroMQ's FD is edge-triggered and a send can consume the edge of a message that just arrived: look
        again on the next loop turn."""
        asyncio.get_running_loop().call_soon(self._on_records)

    def _maybe_forget(self, feed: ContainerFeed) -> None:
        """A stopped container whose every line is in Elasticsearch needs no more shipping (nor its secrets)."""
        if feed.stopped and not feed.backlog and not feed.group:
            if feed.acked is not None and feed.acked != feed.acked_sent:
                # Its last documents finished in this loop turn and their acknowledgement is only scheduled: send it
                # now, or the local store would hold the container as never fully shipped.
                self._ack(feed, feed.acked)
                feed.acked_sent = feed.acked
            self.feeds.pop(feed.container_id, None)
            self.feed_output.pop(feed.container_id, None)
            self.idle_until.pop(feed.container_id, None)
            self.fetch_sent.pop(feed.container_id, None)
            self.setups.forget(feed.container_id)
            self.json_problems.pop(feed.container_id, None)
            self.feed_options.pop(feed.container_id, None)
            (self.config_dir / f"{feed.container_id}.json").unlink(missing_ok=True)
            log.debug("container %s: stopped and fully shipped", feed.container_id[:12])

    def _expire_events(self) -> None:
        """End the multiline events of quiet containers (their timeout passed and no record comes to end them)."""
        now = time.monotonic()
        now_ns = time.time_ns()
        for feed in list(self.feeds.values()):
            if feed.processor is None or not feed.fetching:
                continue
            if now - self.fetch_sent.get(feed.container_id, now) >= QUIET_FETCH:
                self._send(feed, feed.expire(now_ns))

    def _send(self, feed: ContainerFeed, docs: list[PendingDoc]) -> None:
        bulk = self.outputs.get(self.feed_output.get(feed.container_id))  # type: ignore[arg-type]
        if docs and bulk is not None:
            bulk.add(docs)
        if feed.advance() is not None:  # filtered-out events are done at once
            self.ack_due.add(feed.container_id)
            if not self.acks_scheduled:
                self.acks_scheduled = True
                asyncio.get_running_loop().call_soon(self._send_acks)

    def _refetch_idle(self) -> None:
        now = time.monotonic()
        for container_id, until in list(self.idle_until.items()):
            feed = self.feeds.get(container_id)
            if feed is not None and now >= until:
                del self.idle_until[container_id]
                self._fetch(feed)

    def _refetch_stalled(self) -> None:
        now = time.monotonic()
        for feed in list(self.feeds.values()):
            if feed.fetching and now - self.fetch_sent.get(feed.container_id, now) > FETCH_TIMEOUT:
                feed.fetching = False  # the local store died with our fetch: ask again
            if not feed.fetching and feed.container_id not in self.idle_until:
                self._fetch(feed)  # an output that was full has room again

    # --- control and persistence ---------------------------------------------------------------------------

    def _on_control(self) -> None:
        try:
            for msg, _ in self.control.receive(self._bad_message):
                if isinstance(msg, ShipContainer) and is_container_id(msg.container_id):
                    self.ship(msg.container_id, msg.info, msg.options)
                else:
                    self._bad_message(MessageError(f"unexpected {type(msg).__name__} on the control path"))
        except ChannelClosed as exc:
            log.warning("%s from the supervisor; stopping", exc)
            self.stop.set()

    def _save_config(self, container_id: str, info: dict[str, Any], options: dict[str, Any]) -> None:
        """Kept so that a restarted plugin ships what it still owes; 0600: the options may hold secrets."""
        self.config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Older versions kept the whole Info (environment included): a rewrite keeps only what is read back.
        write_json(self.config_dir / f"{container_id}.json", {"info": kept_info(info, options), "options": options})

    def _load_configs(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """The saved configs of containers that still have lines to ship. A damaged one is logged (it is kept:
        the supervisor sends a running container's config again at start-up, which rewrites it; a stopped
        container's lines stay on disk until it is fixed or the container logs again)."""
        configs = []
        for path in sorted(self.config_dir.glob("*.json")) if self.config_dir.exists() else []:
            try:
                data = read_json(path)
                if data is None:
                    continue  # removed meanwhile
                info, options = data.get("info"), data.get("options")
                if not isinstance(info, dict) or not isinstance(options, dict):
                    raise StateFileError(f"{path}: no info and options objects in it")
            except StateFileError as exc:
                log.error("cannot resume shipping container %s: %s", path.stem[:12], exc)
                continue
            configs.append((path.stem, info, options))
        return [c for c in configs if is_container_id(c[0]) and self.shard.owns(c[0])]

    def _bad_message(self, exc: Exception) -> None:
        self.bad_messages += 1
        if self.bad_messages == 1:
            log.error("dropped a malformed message (%s); later ones are only counted in stats", exc)

    def _send_stats(self) -> None:
        counters, per_container, outputs = shipper_stats(self)
        self.control.report(counters, per_container, outputs)


def load_agent_id(data_dir: Path) -> str:
    """agent.id of the documents, kept across restarts in ``<data>/agent-id`` (made anew when missing or bad)."""
    path = data_dir / AGENT_ID_NAME
    try:
        data = read_bytes(path)
        if data is not None:
            return str(uuid.UUID(data.decode().strip()))
    except StateFileError as exc:
        log.warning("%s; a new agent id is made", exc)
    except ValueError:  # UnicodeDecodeError included
        log.warning("%s: not a UUID; a new agent id is made", path)
    agent_id = str(uuid.uuid4())
    try:
        write_text(path, agent_id)
    except OSError as exc:
        log.warning("cannot keep the agent id in %s: %s", path, exc)
    return agent_id


def _quiet_client_logs() -> None:
    """elastic-transport logs every request (INFO) and every failed attempt of a node (WARNING), so an unreachable
    output would fill the log at each retry; the shipper says once per change what is wrong with an output. The
    client's lines stay at LOG_LEVEL=debug."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("elastic_transport").setLevel(logging.ERROR)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("elastic-logging-plugin")
    except PackageNotFoundError:
        return "0.0.0"
