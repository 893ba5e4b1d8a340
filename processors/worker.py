"""`orchestral-stream worker`: check the cluster, create the topics, run the Faust worker."""

from __future__ import annotations

import asyncio
import logging
import sys

from config.settings import Settings
from processors import exit_codes
from processors.admin import prepare_cluster
from processors.local_state import reconcile
from schemas.errors import BrokerSecurityError, BrokerUnreachable, ConfigurationError


def run(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT (exit 0); exit 2 when the broker cannot be reached in time."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )
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
    reconcile(settings.data_dir, cluster.identity)
    # asyncio.run closed its loop; faust takes the current one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    from processors.app import FaustWorker, Worker

    worker = Worker(settings, cluster)
    print(
        f"orchestral-stream worker: consuming {settings.events_topic} at "
        f"{settings.bootstrap_servers} ({settings.processing_guarantee}, codec {settings.codec}); "
        f"metrics on http://{settings.web_host}:{settings.web_port}/metrics",
        flush=True,
    )
    FaustWorker(worker.app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    return 0  # execute_from_commandline exits itself; kept for the type checker
