"""The plugin's HTTP API on the unix socket: what dockerd calls, and /stats for operators.

Handlers validate, hand the work to the ``Supervisor`` and return a JSON object; errors are ``{"Err": ...}``.
StopLogging answers at once and never fails (dockerd leaks the FIFO otherwise). ReadLogs is validated here, then
dockerd's connection is handed to the local store, which writes the frames into it (readhandoff.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import msgpack
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from proto.messages import MAX_CONTROL_MESSAGE, ReadRequest
from proto.options import LogOptionError
from proto.paths import is_container_id
from supervisor.children import Role
from supervisor.readhandoff import MAX_READS
from supervisor.stats import ProcessSampler, collect, prometheus
from supervisor.timeparse import parse_go_time

if TYPE_CHECKING:
    from supervisor.arbiter import Supervisor

log = logging.getLogger("elp.supervisor")

MAX_BODY = 1 << 20
# The Info travels in one control message (a SOCK_SEQPACKET datagram, bounded by the socket buffer) to the local
# store, and again with the log-opts to the shipper: half the message bound leaves room for both.
MAX_INFO = MAX_CONTROL_MESSAGE // 2
# How long a plain `docker logs` of a running container waits for its readers' open batches to be stored.
READ_FLUSH_WAIT = 0.1

SUPERVISOR_KEY = web.AppKey("supervisor", object)
SAMPLER_KEY = web.AppKey("sampler", object)


class BadRequest(ValueError):
    pass


def make_app(supervisor: Supervisor) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SUPERVISOR_KEY] = supervisor
    app.router.add_post("/Plugin.Activate", activate)
    app.router.add_post("/LogDriver.Capabilities", capabilities)
    app.router.add_post("/LogDriver.StartLogging", start_logging)
    app.router.add_post("/LogDriver.StopLogging", stop_logging)
    app.router.add_post("/LogDriver.ReadLogs", read_logs)
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", metrics)
    app[SAMPLER_KEY] = ProcessSampler()
    app.middlewares.append(json_errors)
    return app


def make_metrics_app(supervisor: Supervisor) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SUPERVISOR_KEY] = supervisor
    app[SAMPLER_KEY] = ProcessSampler()
    app.router.add_get("/metrics", metrics)
    return app


def _supervisor(request: web.Request) -> Supervisor:
    return request.app[SUPERVISOR_KEY]  # type: ignore[return-value]


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every answer is a JSON object, also for unknown paths and bad methods."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"Err": f"{exc.status} {exc.reason}: {request.method} {request.path[:200]}"},
                                 status=exc.status)
    except BadRequest as exc:
        return web.json_response({"Err": str(exc)}, status=400)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is not JSON the plugin takes: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


async def activate(request: web.Request) -> web.Response:
    return web.json_response({"Implements": ["LogDriver"]})


async def capabilities(request: web.Request) -> web.Response:
    # Under "Cap": the top-level form in Docker's docs is wrong and silently turns ReadLogs off.
    return web.json_response({"Cap": {"ReadLogs": True}})


async def start_logging(request: web.Request) -> web.Response:
    body = await _body(request)
    info = body.get("Info")
    if not isinstance(info, dict):
        return web.json_response({"Err": "StartLogging needs an Info object"})
    file = body.get("File")
    if isinstance(file, str) and "\x00" in file:
        # os.path refuses it with a bare "embedded null byte"; say which field is wrong.
        return web.json_response({"Err": "File must be the path of the log FIFO; it holds a NUL byte"})
    problem = _info_problem(info)
    if problem:
        return web.json_response({"Err": problem})
    try:
        _supervisor(request).loggers.start_logging(file, info)  # type: ignore[arg-type]
    except (LogOptionError, ValueError) as exc:
        log.warning("StartLogging refused for container %s: %s", str(info.get("ContainerID"))[:12], exc)
        return web.json_response({"Err": str(exc)})
    return web.json_response({})


def _info_problem(info: dict[str, Any]) -> str:
    """Why ``Info`` cannot be passed on to the children (the control messages carry it), or ""."""
    try:
        size = len(msgpack.packb(info, use_bin_type=True))
    except (OverflowError, ValueError) as exc:
        return f"Info holds a value the plugin cannot keep: {exc}"
    if size > MAX_INFO:
        return f"Info is {size} bytes encoded; the plugin takes at most {MAX_INFO}"
    return ""


async def stop_logging(request: web.Request) -> web.Response:
    try:
        body = await _body(request)
    except BadRequest:
        body = {}
    _supervisor(request).loggers.stop_logging(body.get("File"))  # type: ignore[arg-type]
    return web.json_response({})


def _read_request(body: dict[str, Any], sup: Supervisor) -> ReadRequest:
    info = body.get("Info")
    config = body.get("Config") or {}
    if not isinstance(info, dict) or not isinstance(config, dict):
        raise BadRequest("ReadLogs needs Info and Config objects")
    container_id = info.get("ContainerID")
    if not is_container_id(container_id):
        raise BadRequest("Info.ContainerID must be a full container id (64 hex digits)")
    tail = config.get("Tail", -1)
    if not isinstance(tail, int) or isinstance(tail, bool):
        raise BadRequest("Config.Tail must be an integer")
    if not -(2**63) <= tail < 2**63:
        raise BadRequest("Config.Tail is out of range (a 64-bit integer)")
    follow = config.get("Follow", False)
    if not isinstance(follow, bool):
        raise BadRequest("Config.Follow must be a boolean")
    try:
        since, until = parse_go_time(config.get("Since")), parse_go_time(config.get("Until"))
    except ValueError as exc:
        raise BadRequest(f"Config.Since/Until: {exc}") from None
    assert isinstance(container_id, str)
    return ReadRequest(container_id, since, until, tail, follow, sup.loggers.open_fifos(container_id),
                       sup.loggers.draining_fifos(container_id))


async def read_logs(request: web.Request) -> web.StreamResponse:
    sup = _supervisor(request)
    read = _read_request(await _body(request), sup)
    reads = sup.reads
    if not _localstore_running(sup):
        return web.json_response({"Err": "the local store is not running; try again in a moment"}, status=503)
    if reads.full():
        return web.json_response({"Err": f"{MAX_READS} docker logs streams are open; try again when one ended"},
                                 status=503)
    # A running container's readers hold up to a second of lines in open batches (see workers/main.py): told of
    # the read, they send them at once; give that the moment it takes to be stored, so that `docker logs` shows
    # everything written before it was asked (a follower would get those lines anyway, a moment later).
    told = sup.loggers.follow(read.container_id, +1)
    handed = False
    try:
        if told and not read.follow:
            await asyncio.sleep(READ_FLUSH_WAIT)
        transport = request.transport
        if transport is not None and not transport.is_closing():
            handed = reads.hand_over(transport, read, sup.send_to_localstore)
    finally:
        if not handed:  # else the follower count drops when the store ends the stream
            sup.loggers.follow(read.container_id, -1)
    # The connection is the local store's now (or dockerd left): aiohttp finds its transport closed and writes
    # nothing of this.
    return web.StreamResponse()


def _localstore_running(sup: Supervisor) -> bool:
    child = sup.services[Role.LOCALSTORE].child
    return child is not None and child.outbox is not None


async def stats(request: web.Request) -> web.Response:
    return web.json_response(collect(_supervisor(request), request.app[SAMPLER_KEY]))  # type: ignore[arg-type]


async def metrics(request: web.Request) -> web.Response:
    data = collect(_supervisor(request), request.app[SAMPLER_KEY], uss=False)  # type: ignore[arg-type]
    return web.Response(body=prometheus(data), headers={"Content-Type": CONTENT_TYPE_LATEST})
