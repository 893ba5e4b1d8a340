"""The thread API of one worker (issue 13): restore of the history index, reads, writes, streams.

1. Restore: `--api-large` synthetic store records (BENCH_API_LARGE) are produced straight to
   the deployment's store topic for one thread, `--api-small` (BENCH_API_SMALL) for a thread of
   another partition, before the worker starts with an empty data dir; its thread log indexes
   them at start. Measured: process start -> `GET /readyz` 200, and -> the large thread's
   history page starting at `seq` N.
2. One real `POST /threads/{id}/events?wait=5` on each of the two threads, so they have state.
3. Reads: `GET /threads/{id}` and `GET /threads/{id}/history?limit=20`, `--api-requests`
   sequential requests each (BENCH_API_REQUESTS) over one aiohttp session after a warm-up,
   for the large and the small thread: p50/p99 and the large/small p99 ratio.
4. Writes at low load: `--api-posts` (BENCH_API_POSTS) sequential `POST ...?wait=5` on new
   threads: p50/p99 of the answer (outcome included).
5. Streams: `--api-streams` (BENCH_API_STREAMS) concurrent SSE streams (`?from=now`), each on
   its own thread; then one post per thread, one after the other: delivery latency, post sent
   (and post answered 202) -> the stream received the `store` message.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp

from benchmarks.bench_run import BenchRun, current_timestamp, log, mb
from benchmarks.kafka_io import bench_deployment
from benchmarks.latency import percentile
from devtools.deployment import WorkerProcess, produce
from processors.worker.handler import home_partition

WARM_UP = 100
HISTORY_LIMIT = 20


def url(worker: WorkerProcess) -> str:
    return f"http://127.0.0.1:{worker.env['ORCHESTRAL_WEB_PORT']}"


def thread_on(partition: int, partitions: int, prefix: str) -> str:
    """The first id `prefix-N` whose home partition is `partition`."""
    n = 0
    while home_partition(f"{prefix}-{n}".encode(), partitions) != partition:
        n += 1
    return f"{prefix}-{n}"


def store_records(thread_id: str, count: int) -> Iterator[tuple[bytes, bytes]]:
    """`count` user inputs of `thread_id` as the worker stores them, seq 1..count."""
    key = thread_id.encode()
    stamp = current_timestamp()
    for seq in range(1, count + 1):
        record = {
            "type": "user_input",
            "thread_id": thread_id,
            "interaction_id": None,
            "payload": {"message": "x"},
            "task_id": None,
            "step_id": None,
            "timestamp": stamp,
            "seq": seq,
            "event_id": f"e-{seq}",
        }
        yield key, json.dumps(record, separators=(",", ":")).encode()


def stats_ms(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(seconds)
    return {
        "samples": len(ordered),
        "p50_ms": round(percentile(ordered, 50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def message(text: str) -> dict[str, Any]:
    return {"type": "user_input", "payload": {"message": text}}


async def restore(
    session: aiohttp.ClientSession, worker: WorkerProcess, large: str, expected_seq: int
) -> dict[str, float]:
    """Seconds from the worker's start to /readyz 200 and to the large thread's newest seq."""
    base = url(worker)
    out: dict[str, float] = {}
    deadline = time.monotonic() + 1800
    while "history_s" not in out:
        if not worker.alive():
            raise RuntimeError(f"worker died:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"thread log not restored:\n{worker.log_tail()}")
        try:
            if "readyz_s" not in out:
                async with session.get(base + "/readyz") as r:
                    if r.status == 200:
                        out["readyz_s"] = time.monotonic() - worker.started_at
            if "readyz_s" in out:
                async with session.get(
                    f"{base}/threads/{large}/history", params={"limit": "1"}
                ) as r:
                    page = await r.json(content_type=None) if r.status == 200 else {}
                events = page.get("events") or [{}]
                if events[0].get("seq") == expected_seq:
                    out["history_s"] = time.monotonic() - worker.started_at
                    break
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    return out


async def post(
    session: aiohttp.ClientSession, base: str, thread: str, text: str, wait: str | None
) -> int:
    params = {"wait": wait} if wait else {}
    async with session.post(
        f"{base}/threads/{thread}/events", json=message(text), params=params
    ) as r:
        await r.read()
        return r.status


async def timed_gets(
    session: aiohttp.ClientSession, target: str, params: dict[str, str], count: int
) -> list[float]:
    for _ in range(WARM_UP):
        async with session.get(target, params=params) as r:
            assert r.status == 200, (target, r.status, await r.text())
            await r.read()
    times = []
    for _ in range(count):
        began = time.perf_counter()
        async with session.get(target, params=params) as r:
            await r.read()
        times.append(time.perf_counter() - began)
        assert r.status == 200, (target, r.status)
    return times


async def reads(
    session: aiohttp.ClientSession, base: str, threads: dict[str, str], requests: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for endpoint, suffix, params in (
        ("state", "", {}),
        ("history", "/history", {"limit": str(HISTORY_LIMIT)}),
    ):
        for size, thread in threads.items():
            times = await timed_gets(session, f"{base}/threads/{thread}{suffix}", params, requests)
            out[f"{endpoint}/{size}"] = stats_ms(times)
            log(f"thread API: GET {endpoint} of the {size} thread: {out[f'{endpoint}/{size}']}")
        large, small = out[f"{endpoint}/large"]["p99_ms"], out[f"{endpoint}/small"]["p99_ms"]
        out[f"{endpoint}/p99_ratio_large_small"] = round(large / small, 2) if small else None
    return out


async def writes(
    session: aiohttp.ClientSession, base: str, prefix: str, posts: int
) -> dict[str, Any]:
    for i in range(10):  # warm-up, on threads of their own
        await post(session, base, f"{prefix}-warm-{i}", "warm-up", "5")
    times = []
    for i in range(posts):
        began = time.perf_counter()
        status = await post(session, base, f"{prefix}-{i}", "hello", "5")
        times.append(time.perf_counter() - began)
        assert status == 200, status
    return stats_ms(times)


async def streams(
    session: aiohttp.ClientSession, base: str, prefix: str, count: int
) -> dict[str, Any]:
    """`count` open streams, one per thread; one post per thread; sent/answered -> received."""
    received: dict[int, asyncio.Future[float]] = {}
    opened: list[asyncio.Future[None]] = []
    loop = asyncio.get_running_loop()

    async def follow(i: int) -> None:
        async with session.get(
            f"{base}/threads/{prefix}-{i}/stream", params={"from": "now"}, timeout=None
        ) as r:
            assert r.status == 200, r.status
            await r.content.readline()  # the first keep-alive comment: the stream is open
            opened[i].set_result(None)
            event = ""
            while True:
                line = (await r.content.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "store":
                    received[i].set_result(time.perf_counter())
                    return

    for i in range(count):
        received[i] = loop.create_future()
        opened.append(loop.create_future())
    tasks = [asyncio.ensure_future(follow(i)) for i in range(count)]
    try:
        await asyncio.wait_for(asyncio.gather(*opened), 60)
        await asyncio.sleep(1.0)  # every stream's tail listens
        sent: list[float] = []
        answered: list[float] = []
        for i in range(count):
            sent.append(time.perf_counter())
            status = await post(session, base, f"{prefix}-{i}", "streamed", None)
            answered.append(time.perf_counter())
            assert status == 202, status
        arrivals = await asyncio.wait_for(asyncio.gather(*received.values()), 60)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "streams": count,
        "from_post_sent": stats_ms([a - s for a, s in zip(arrivals, sent, strict=True)]),
        "from_post_answered": stats_ms(
            [max(0.0, a - s) for a, s in zip(arrivals, answered, strict=True)]
        ),
        "received_before_answer": sum(a < s for a, s in zip(arrivals, answered, strict=True)),
    }


async def exercise(
    worker: WorkerProcess,
    threads: dict[str, str],
    large_count: int,
    prefix: str,
    sizes: dict[str, int],
) -> dict[str, Any]:
    base = url(worker)
    connector = aiohttp.TCPConnector(limit=0)  # the streams and the posts at once
    async with aiohttp.ClientSession(connector=connector) as session:
        out: dict[str, Any] = {
            "restore": await restore(session, worker, threads["large"], large_count)
        }
        log(f"thread API: restore {out['restore']}")
        for thread in threads.values():
            status = await post(session, base, thread, "state", "5")
            assert status == 200, status
        out["reads"] = await reads(session, base, threads, sizes["requests"])
        out["post_wait"] = await writes(session, base, f"{prefix}-post", sizes["posts"])
        log(f"thread API: POST ?wait=5 {out['post_wait']}")
        out["sse"] = await streams(session, base, f"{prefix}-sse", sizes["streams"])
        log(f"thread API: SSE delivery {out['sse']}")
    return out


def measure_thread_api(
    run: BenchRun, large: int, small: int, requests: int, posts: int, stream_count: int
) -> dict[str, Any]:
    name = f"{run.run_id}-api"
    d = bench_deployment(run.bootstrap, name, run.tmp, "")
    d.create_topics()
    prefix = f"{run.run_id}-t"
    threads = {
        "large": thread_on(0, d.partitions, f"{prefix}-large"),
        "small": thread_on(1, d.partitions, f"{prefix}-small"),
    }
    store = d.env["ORCHESTRAL_STORE_TOPIC"]
    began = time.monotonic()
    for size, count in (("large", large), ("small", small)):
        asyncio.run(
            produce(
                run.bootstrap, store, store_records(threads[size], count), max_batch_size=256 * 1024
            )
        )
    log(f"thread API: {large:,} + {small:,} store records in {time.monotonic() - began:.0f}s")
    sizes = {"requests": requests, "posts": posts, "streams": stream_count}
    worker = d.worker(0).start()
    try:
        out = asyncio.run(exercise(worker, threads, large, prefix, sizes))
        out["peak_rss_mb"] = mb(worker.peak_rss_bytes())
    finally:
        d.stop_all()
    return {
        "sizes": {
            "large_thread_store_records": large,
            "small_thread_store_records": small,
            "partitions": d.partitions,
            "history_limit": HISTORY_LIMIT,
            "warm_up_requests": WARM_UP,
            **sizes,
        },
        **out,
    }
