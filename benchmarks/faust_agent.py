"""Second baseline: a faust agent that acks every record and does nothing else.

    python -m benchmarks.faust_agent --bootstrap HOST:PORT --topic T --records N --data-dir D \
        --result FILE

One agent, concurrency 1, the worker's consumer settings, raw bytes, no table, no output. It
measures what faust itself costs per record on this machine: the ceiling of any worker built on
a faust agent, below the raw aiokafka pipe. Writes {"rate": records/s} to FILE (faust takes
over stdout), from the first record to the N-th (in process, so start-up is not counted).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import faust

from config.settings import Settings
from processors.worker.app import faust_settings


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--result", required=True)
    args = p.parse_args(argv)
    # The worker's own faust settings (as the bench runs it: 6 s session), without the web.
    settings = Settings.model_validate(
        {"bootstrap_servers": args.bootstrap, "data_dir": args.data_dir, "session_timeout": 6}
    )
    app = faust.App(
        f"{args.topic}-faust-agent-{os.getpid()}",
        **{**faust_settings(settings), "web_enabled": False},
    )
    topic = app.topic(args.topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    seen = {"count": 0, "first": 0.0}

    async def ack_only(stream: Any) -> None:
        async for event in stream.events():
            event.ack()
            seen["count"] += 1
            if seen["count"] == 1:
                seen["first"] = time.monotonic()
            if seen["count"] >= args.records:
                rate = (args.records - 1) / max(1e-9, time.monotonic() - seen["first"])
                with open(args.result, "w") as result:
                    json.dump({"rate": round(rate)}, result)
                logging.shutdown()
                os._exit(0)

    app.agent(topic, name="ack_only", concurrency=1)(ack_only)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
