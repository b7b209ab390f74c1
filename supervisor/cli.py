"""``elastic-logging-plugin``: ``serve`` runs the plugin in the foreground; ``stats`` asks a running one."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from supervisor.permissions import UMASK
from supervisor.settings import PluginSettings, SettingsError

# Docker refuses socket paths over 108 bytes, and the host path adds the 64-hex plugin id: keep it short.
DEFAULT_SOCKET = "/run/docker/plugins/elp.sock"
DEFAULT_DATA_DIR = "/var/lib/docker/elastic-logging-plugin"
DEFAULT_FIFO_DIR = "/run/docker/logging"
LOG_FORMAT = "%(levelname)s [supervisor] %(message)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elastic-logging-plugin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the plugin (the supervisor) in the foreground")
    serve.add_argument("--socket", default=DEFAULT_SOCKET, type=Path, help="plugin socket to listen on")
    serve.add_argument("--data-dir", default=DEFAULT_DATA_DIR, type=Path, help="where the local store lives")
    serve.add_argument("--fifo-dir", default=DEFAULT_FIFO_DIR, type=Path, help="where dockerd creates log FIFOs")
    stats = sub.add_parser("stats", help="show a running plugin's figures")
    stats.add_argument("--socket", default=DEFAULT_SOCKET, type=Path)
    stats.add_argument("--json", action="store_true", help="print the raw JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    from supervisor.statscli import show_stats

    return show_stats(args.socket, args.json)


def serve(args: argparse.Namespace) -> int:
    try:
        settings = PluginSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"elastic-logging-plugin: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT, stream=sys.stderr)
    # Before anything is created; the children are forked and inherit it (supervisor/permissions.py).
    os.umask(UMASK)
    import uvloop

    from supervisor.arbiter import ServeConfig, Supervisor

    config = ServeConfig(args.socket, args.data_dir.absolute(), args.fifo_dir.absolute(), settings)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(Supervisor(config).run())
    finally:
        loop.close()
