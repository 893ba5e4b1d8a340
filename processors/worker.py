"""`orchestral-stream worker`: check the cluster, create the topics, run the Faust worker."""

from __future__ import annotations

import asyncio
import logging
import sys

from config.settings import Settings
from processors import exit_codes, logs
from processors.admin import ensure_topics
from schemas.errors import BrokerSecurityError, BrokerUnreachable, ConfigurationError


def run(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT (exit 0); exit 2 when the broker cannot be reached in time."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )
    logs.install()
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
        asyncio.run(ensure_topics(settings))
    except BrokerUnreachable as exc:
        print(f"orchestral-stream worker: {exc}", file=sys.stderr)
        return exit_codes.UNREACHABLE
    except BrokerSecurityError as exc:  # waiting cannot fix refused credentials or TLS
        print(f"orchestral-stream worker: {exc}", file=sys.stderr)
        return exit_codes.REFUSED
    except ConfigurationError as exc:  # e.g. a TLS file that cannot be loaded
        print(f"orchestral-stream worker: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    # asyncio.run closed its loop; faust takes the current one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    import faust  # imported late: it is slow to import and needs the loop set

    from processors.app import Worker

    worker = Worker(settings)
    print(
        f"orchestral-stream worker: consuming {settings.events_topic} at "
        f"{settings.bootstrap_servers} ({settings.processing_guarantee}, codec {settings.codec}); "
        f"metrics on http://{settings.web_host}:{settings.web_port}/metrics",
        flush=True,
    )
    faust.Worker(worker.app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    return 0  # execute_from_commandline exits itself; kept for the type checker

