"""`orchestral-stream worker`: check the cluster, create the topics, run the Faust worker."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys

from config.settings import Settings
from processors import exit_codes
from processors.api import bind_problem
from processors.worker import faust_compat, logs
from processors.worker.cluster_identity import prepare_cluster
from processors.worker.local_state import reconcile
from schemas.errors import BrokerSecurityError, BrokerUnreachable, ConfigurationError


def run(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT (exit 0); exit 2 when the broker cannot be reached in time."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )
    logs.install()
    exposed = bind_problem(settings)
    if exposed is not None:
        print(f"orchestral-stream worker: {exposed}", file=sys.stderr)
        return exit_codes.USAGE
    unusable = web_port_problem(settings.web_host, settings.web_port)
    if unusable is not None:
        message, code = unusable
        print(f"orchestral-stream worker: {message}", file=sys.stderr)
        return code
    try:
        # faust creates only the last level of its data dir: a fresh clone has no ./var yet.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"orchestral-stream worker: cannot create ORCHESTRAL_DATA_DIR {settings.data_dir}: "
            f"{exc.strerror}",
            file=sys.stderr,
        )
        return exit_codes.CANNOT_CREATE
    try:
        cluster = asyncio.run(prepare_cluster(settings))
    except BrokerUnreachable as exc:
        print(f"orchestral-stream worker: {exc}", file=sys.stderr)
        return exit_codes.UNREACHABLE
    except BrokerSecurityError as exc:  # waiting cannot fix refused credentials or TLS
        print(f"orchestral-stream worker: {exc}", file=sys.stderr)
        return exit_codes.REFUSED
    except ConfigurationError as exc:  # e.g. a TLS file that cannot be loaded
        print(f"orchestral-stream worker: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    # Before faust opens the local state: it must belong to this cluster and these topics.
    changes = reconcile(settings.data_dir, cluster.identity) or []
    # The events topic was recreated since this data dir last ran: the consumer group's offsets
    # may still be the old topic's (processing.py, `_start_of_recreated`).
    recreated = any(c.startswith(f"topic {settings.events_topic} ") for c in changes)
    # asyncio.run closed its loop; faust takes the current one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    try:
        untested = faust_compat.check()
    except ConfigurationError as exc:
        print(f"orchestral-stream worker: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    for problem in untested:  # allowed by ORCHESTRAL_ALLOW_UNPINNED=1
        logging.getLogger("orchestral.worker").warning("untested: %s", problem)
    from processors.worker.app import FaustWorker, Worker

    worker = Worker(settings, cluster, events_recreated=recreated)
    print(
        f"orchestral-stream worker: consuming {settings.events_topic} at "
        f"{settings.bootstrap_servers} ({settings.processing_guarantee}, codec {settings.codec}); "
        f"metrics on http://{settings.web_host}:{settings.web_port}/metrics",
        flush=True,
    )
    FaustWorker(worker.app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    return 0  # execute_from_commandline exits itself; kept for the type checker


def web_port_problem(host: str, port: int) -> tuple[str, int] | None:
    """Why faust's web server could not listen on host:port (a message and an exit code), or
    None. Checked before starting faust, which would otherwise die on it with a long
    traceback. SO_REUSEADDR as aiohttp sets it: a previous worker's TIME_WAIT is no conflict."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve ORCHESTRAL_WEB_HOST {host!r}: {exc.strerror}", exit_codes.USAGE
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return (
                        f"port {port} on {host} is in use (another worker?): "
                        "set ORCHESTRAL_WEB_PORT",
                        exit_codes.UNAVAILABLE,
                    )
                return (
                    f"cannot listen on {host}:{port} (ORCHESTRAL_WEB_HOST/ORCHESTRAL_WEB_PORT): "
                    f"{exc.strerror}",
                    exit_codes.USAGE,
                )
    return None
