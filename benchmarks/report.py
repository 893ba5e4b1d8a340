"""The one writer of the Kafka bench's results: `benchmarks/results/kafka.json` (every figure)
and the "Kafka" section of BENCHMARKS.md (the tables, each target with its verdict).

The targets are reported, not asserted: a missed one is a finding of the run, not a failure.

A run that skipped some measurement (BENCH_SKIP) is merged into the results already there: the
measurements it made replace theirs, the others stay as they were, and each replaced section
records the run that measured it (`measured_by`: its command, date, duration, load), shown
beside its table, so reduced sizes never pass for the full-size figures.
"""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import core_bench
from benchmarks.markdown import replace_section
from devtools.broker import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "kafka.json"
SECTION = "## Kafka (make bench)"
TARGETS = {
    # Issue 16: the worker against the faust-agent ceiling measured in the same run.
    "alo_ratio_to_faust": 0.65,
    "eos_ratio_to_faust": 0.55,
    "p99_ms_50": 20.0,
    "recovery_local_s": 3.0,
    "recovery_changelog_s": 15.0,
    "state_bytes_per_thread": 600.0,
    "peak_rss_mb": 400.0,
    "api_state_p99_ms": 10.0,
    "api_history_p99_ms": 20.0,
    "api_p99_ratio_large_small": 1.5,
    "deadlines_throughput_loss": 0.05,
}
# The top-level keys of one measurement each, in the order of kafka_bench's docstring.
MEASUREMENTS = (
    "core",
    "raw_pipe",
    "faust_agent",
    "worker",
    "latency",
    "recovery",
    "recovery_eos",
    "scaling",
    "thread_api",
    "deadlines",
)


# What `measured_by` records of a run (a carried-over section's).
RUN_FIELDS = ("run_id", "command", "date", "duration_s", "load_average", "versions")


def versions(how: str) -> dict[str, str]:
    kafka = f"{KAFKA_VERSION} ({how})" if how != "reused" else "(the broker given, reused)"
    out = {"python": platform.python_version(), "kafka": kafka}
    for dist in ("faust-streaming", "aiokafka", "rocksdict", "fastavro", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def write_report(report: dict[str, Any], duration_s: int, broker_how: str) -> None:
    """Close `report` (duration, machine, versions, the command that reproduces it) and write
    it: the JSON in full, then BENCHMARKS.md's section."""
    report["duration_s"] = duration_s
    report["machine"] = core_bench.machine()
    report["versions"] = versions(broker_how)
    overrides = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("BENCH_"))
    report["command"] = " ".join([*overrides, "make bench"])
    report["date"] = time.strftime("%Y-%m-%d", time.gmtime())
    report = merged(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    replace_section(SECTION, render_section(report))


def merged(report: dict[str, Any]) -> dict[str, Any]:
    """`report`, with the measurements it skipped (BENCH_SKIP) carried over from the results
    already there, each marked `measured_by` the run that measured it: the page describes the
    newest run, and says which sections are older."""
    previous: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    carried = [k for k in MEASUREMENTS if k in previous and k not in report]
    if not carried:
        return report
    by = {key: previous.get(key) for key in RUN_FIELDS}
    out = dict(report)
    for key in carried:
        section = previous[key]
        if isinstance(section, dict):
            section = {**section, "measured_by": section.get("measured_by") or by}
        out[key] = section
    return out


# --- BENCHMARKS.md ------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "missed")


def _within(value: float | None, target: str) -> str:
    """The verdict of a figure that must stay at or below its target."""
    return _verdict(None if value is None else value <= TARGETS[target])


def render_section(report: dict[str, Any]) -> str:
    """BENCHMARKS.md's Kafka section: the workload, one table per measurement that ran, the
    machine and the versions."""
    lines = _workload(report)
    lines += _throughput(report)
    lines += _latency(report.get("latency"))
    lines += _recovery(report.get("recovery"), report.get("recovery_eos"))
    lines += _scaling(report.get("scaling"))
    lines += _thread_api(report.get("thread_api"))
    lines += _deadlines(report.get("deadlines"))
    lines += _machine(report)
    return "\n".join(lines)


def _workload(report: dict[str, Any]) -> list[str]:
    w = report["workload"]
    sizes = ", ".join(f"{c} {b:.0f}" for c, b in w.get("mean_value_bytes", {}).items())
    # A partial run (BENCH_SKIP) may measure no sizes: then the clause is left out.
    mean_value = f", mean value {sizes} bytes" if sizes else ""
    return [
        SECTION,
        "",
        f"{w['records']:,} records over {w['threads']:,} threads ({w['mix']}{mean_value}), "
        f"{w['partitions']} partitions, one broker. "
        f"Rates are the median of {w['repeats']} runs; the raw pipe (aiokafka consumer + "
        "producer, acks=all, linger 5 ms, one output per input, no state, no policy) is "
        "measured in the same run, and the worker is reported as a ratio to it. "
        f"Run `{report['command']}` ({report.get('duration_s', '?')} s). Raw numbers: "
        "`benchmarks/results/kafka.json`. Targets are reported, not asserted.",
        "",
    ]


def _throughput(report: dict[str, Any]) -> list[str]:
    codecs = report["workload"]["codecs"]
    raw = report.get("raw_pipe", {})
    workers = report.get("worker", {})
    if not (raw or workers):
        return []
    lines = [
        "### Throughput (records/s)",
        "",
        "| | " + " | ".join(codecs) + " | target |",
        "|---|" + "---:|" * len(codecs) + "---|",
        "| raw aiokafka pipe | "
        + " | ".join(_fmt(raw.get(c, {}).get("median")) for c in codecs)
        + " | |",
    ]
    agent = report.get("faust_agent", {})
    if agent:
        cells = [
            f"{e['median']:,} ({_fmt(e.get('ratio_to_raw'), '.1%')})"
            if (e := agent.get(c))
            else "n/a"
            for c in codecs
        ]
        lines.append(
            "| faust agent that only acks (ratio to raw): the ceiling of a faust worker | "
            + " | ".join(cells)
            + " | |"
        )
    for g, target in (
        ("at_least_once", "alo_ratio_to_faust"),
        ("exactly_once", "eos_ratio_to_faust"),
    ):
        cells = []
        oks = []
        for c in codecs:
            e = workers.get(f"{c}/{g}")
            ceiling = (agent.get(c) or {}).get("median")
            if e is None:
                cells.append("n/a")
                continue
            to_faust = e["median"] / ceiling if ceiling else None
            cells.append(
                f"{e['median']:,} ({_fmt(to_faust, '.1%')}; "
                f"{_fmt(e.get('ratio_to_raw'), '.1%')} of raw)"
            )
            if to_faust is not None:
                oks.append(to_faust >= TARGETS[target])
        verdict = _verdict(all(oks) if oks else None)
        lines.append(
            f"| worker, {g.replace('_', '-')} (ratio to the faust agent; to raw) | "
            + " | ".join(cells)
            + f" | >= {TARGETS[target]:.0%} of the faust agent: {verdict} |"
        )
    lines.append("")
    return lines


def _latency(lat: dict[str, Any] | None) -> list[str]:
    if not lat:
        return []
    lines = [
        "### End-to-end latency, at-least-once, JSON (input sent -> outcome received)",
        "",
        f"Paced producer; load as a share of the worker's at-least-once JSON rate "
        f"({lat['max_rate_basis']:,}/s); the first seconds of each step left out.",
        "",
        "| load | sent/s | samples | p50 ms | p99 ms | p99.9 ms | max ms | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key in ("25%", "50%"):
        r = lat.get(key)
        if not r:
            continue
        target = ""
        if key == "50%" and r["p99_ms"] is not None:
            target = f"p99 <= 20 ms: {_within(r['p99_ms'], 'p99_ms_50')}"
        lines.append(
            f"| {key} | {r['achieved_send_rate']:,} | {r['samples']:,} | "
            f"{_fmt(r['p50_ms'], '.1f')} | {_fmt(r['p99_ms'], '.1f')} | "
            f"{_fmt(r['p999_ms'], '.1f')} | {_fmt(r['max_ms'], '.1f')} | {target} |"
        )
    lines.append("")
    return lines


def _recovery(rec: dict[str, Any] | None, rec_eos: dict[str, Any] | None) -> list[str]:
    if not rec:
        return []
    local = rec.get("local", {}).get("start_to_first_record_s")
    changelog = rec.get("changelog", {}).get("start_to_first_record_s")
    cold = rec.get("cold_start_no_state", {}).get("start_to_first_record_s")
    peaks = (
        rec["build"].get("peak_rss_mb"),
        rec.get("local", {}).get("peak_rss_mb"),
        rec.get("changelog", {}).get("peak_rss_mb"),
    )
    peak = max((v for v in peaks if v is not None), default=None)
    st = rec["state"]
    lines = [
        f"### Recovery and memory, {rec['threads']:,} threads of state "
        f"({rec['records']:,} input records: one per thread, then the usual mix; "
        "at-least-once, JSON)",
        "",
        "| measurement | value | target |",
        "|---|---:|---|",
        f"| start -> first record, local RocksDB | {_fmt(local, '.1f')} s | <= 3 s: "
        f"{_within(local, 'recovery_local_s')} |",
        f"| start -> first record, empty data dir (changelog) | {_fmt(changelog, '.1f')} s "
        f"| <= 15 s: {_within(changelog, 'recovery_changelog_s')} |",
        f"| start -> first record, no state at all (reference) | {_fmt(cold, '.1f')} s | |",
    ]
    eos = (rec_eos or {}).get("local", {}).get("start_to_first_record_s")
    if eos is not None:
        lines.append(
            f"| start -> first record, local RocksDB, exactly-once | {eos:.1f} s | (reported) |"
        )
    lines += [
        f"| peak RSS of the worker (build, restarts) | {_fmt(peak, '.0f')} MB | <= 400 MB: "
        f"{_within(peak, 'peak_rss_mb')} |",
        f"| state per thread, RocksDB key + value | {st['logical_bytes_per_thread']:,} B "
        f"| <= 600 B: {_within(st['logical_bytes_per_thread'], 'state_bytes_per_thread')} |",
        f"| state per thread, on disk | {st['on_disk_bytes_per_thread']:,} B | |",
        f"| processing rate while building the state | {rec['build']['rate']:,}/s | |",
        "",
    ]
    return lines


def _scaling(sc: dict[str, Any] | None) -> list[str]:
    if not sc:
        return []
    return [
        "### One worker against two (same group, partitions split, same machine)",
        "",
        f"{sc['codec']}, at-least-once: one worker {_fmt(sc['one_worker'])}/s, two workers "
        f"{_fmt(sc['two_workers'])}/s (x{_fmt(sc['speedup'], '.2f')}; medians of "
        f"{len(sc.get('two_workers_runs', [1]))} runs).",
        "",
    ]


def _measured_by(section: dict[str, Any]) -> list[str]:
    """The line that says a section comes from another run than the page's (a merge)."""
    by = section.get("measured_by")
    if not by:
        return []
    date = by.get("date") or "an earlier date"
    return [
        f"Measured in a separate run ({date}, {by['duration_s']} s, load average "
        f"{(by.get('load_average') or {}).get('before', '?')} before): `{by['command']}`.",
        "",
    ]


def _runs(rates: list[int] | None) -> str:
    return ", ".join(f"{r:,}" for r in rates or []) or "n/a"


def _size_note(reduced: bool) -> str:
    if not reduced:
        return ""
    return (
        "**Reduced size**: measured at the sizes named here, not at the full-size defaults "
        "(given beside them). "
    )


def _ms_row(label: str, r: dict[str, Any] | None, target: str = "") -> str:
    if not r:
        return f"| {label} | n/a | n/a | n/a | n/a | {target} |"
    return (
        f"| {label} | {r['samples']:,} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
        f"{r['max_ms']:.1f} | {target} |"
    )


def _thread_api(api: dict[str, Any] | None) -> list[str]:
    if not api:
        return []
    sz, rd, rs = api["sizes"], api.get("reads", {}), api.get("restore", {})
    large, small = sz["large_thread_store_records"], sz["small_thread_store_records"]
    lines = [
        f"### Thread API, one worker ({large:,} store records on one thread, {small:,} on a "
        "thread of another partition)",
        "",
        *_measured_by(api),
        _size_note(
            (large, small, sz["requests"], sz["posts"], sz["streams"])
            != (1_000_000, 10_000, 2000, 300, 100)
        )
        + f"Full size: {1_000_000:,} and {10_000:,} store records (BENCH_API_LARGE, "
        "BENCH_API_SMALL), 2,000 requests per read (BENCH_API_REQUESTS), 300 posts "
        "(BENCH_API_POSTS), 100 streams (BENCH_API_STREAMS). Sequential requests over one "
        f"aiohttp session after {sz['warm_up_requests']} of warm-up, on the same machine as "
        "the worker and the broker. The restore times include the worker's own start (see the "
        "cold start in the recovery table).",
        "",
        "| measurement | value | target |",
        "|---|---:|---|",
        f"| restore of the history index from an empty data dir at {large + small:,} store "
        f"records: start -> `/readyz` 200 | {_fmt(rs.get('readyz_s'), '.1f')} s | |",
        f"| ... start -> history of the large thread ends at seq {large:,} | "
        f"{_fmt(rs.get('history_s'), '.1f')} s | |",
        "",
        "| request | samples | p50 ms | p99 ms | max ms | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for endpoint, label, target in (
        ("state", "`GET /threads/{id}`", "api_state_p99_ms"),
        (
            "history",
            f"`GET /threads/{{id}}/history?limit={sz['history_limit']}`",
            "api_history_p99_ms",
        ),
    ):
        for size in ("large", "small"):
            r = rd.get(f"{endpoint}/{size}")
            verdict = _within(r["p99_ms"] if r else None, target)
            lines.append(
                _ms_row(f"{label}, {size} thread", r, f"p99 <= {TARGETS[target]:.0f} ms: {verdict}")
            )
    for endpoint in ("state", "history"):
        ratio = rd.get(f"{endpoint}/p99_ratio_large_small")
        lines.append(
            f"| {endpoint}: p99 large / p99 small | | | {_fmt(ratio, '.2f')} | | <= 1.5: "
            f"{_within(ratio, 'api_p99_ratio_large_small')} |"
        )
    lines.append(_ms_row("`POST /threads/{id}/events?wait=5`, new threads", api.get("post_wait")))
    sse = api.get("sse") or {}
    lines += [
        _ms_row(
            f"SSE delivery, {sse.get('streams', 0)} concurrent streams: post sent -> `store` "
            "message received",
            sse.get("from_post_sent"),
        ),
        _ms_row(
            "SSE delivery: post answered (202) -> `store` message received",
            sse.get("from_post_answered"),
        ),
        "",
        f"Peak RSS of the worker: {_fmt(api.get('peak_rss_mb'), '.0f')} MB.",
        "",
    ]
    return lines


def _deadlines(dl: dict[str, Any] | None) -> list[str]:
    if not dl:
        return []
    tick, tp = dl.get("tick") or {}, dl.get("throughput") or {}
    ratio = tp.get("ratio_on_off")
    loss = None if ratio is None else 1 - ratio
    lines = [
        "### Deadline timer",
        "",
        *_measured_by(dl),
        _size_note(
            (tick.get("threads"), tp.get("records"), tp.get("repeats")) != (100_000, 200_000, 3)
        )
        + "Tick: one user input (current timestamps) on each of "
        f"{tick.get('threads', 0):,} threads (full size {100_000:,}, BENCH_DEADLINE_THREADS), "
        "run timeout 3600 s, a tick a second; "
        f"the ticks of {_fmt(tick.get('ticks_window_s'), '.0f')} s after every state exists "
        "(BENCH_DEADLINE_TICKS). Throughput: "
        f"{tp.get('records', 0):,} records of the usual mix over {tp.get('threads', 0):,} threads "
        f"(full size {200_000:,}, BENCH_DEADLINE_RECORDS), current timestamps, JSON, "
        "at-least-once, deadlines on (run timeout 3600 s) and off (0) alternating, medians of "
        f"{tp.get('repeats', 0)} runs each (BENCH_REPEATS).",
        "",
        "| measurement | value | target |",
        "|---|---:|---|",
        f"| threads in the deadline index (`orchestral_deadline_threads`) | "
        f"{_fmt(tick.get('deadline_threads'))} | |",
        f"| time per tick, mean ({_fmt(tick.get('ticks'))} ticks) | "
        f"{_fmt(tick.get('mean_ms'), '.2f')} ms | |",
        f"| time per tick, p99 (histogram bucket bound) | <= "
        f"{_fmt(tick.get('p99_bucket_ms'), '.1f')} ms | |",
        f"| worker throughput, deadlines off (runs {_runs(tp.get('off_runs'))}) | "
        f"{_fmt(tp.get('off'))}/s | |",
        f"| worker throughput, deadlines on (runs {_runs(tp.get('on_runs'))}; ratio to off) | "
        f"{_fmt(tp.get('on'))}/s ({_fmt(ratio, '.1%')}) | within 5%: "
        f"{_verdict(None if loss is None else loss <= TARGETS['deadlines_throughput_loss'])} |",
        "",
    ]
    return lines


def _machine(report: dict[str, Any]) -> list[str]:
    m, v = report["machine"], report["versions"]
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; 1-minute load average "
        f"{report.get('load_average', {}).get('before', '?')} before the run (other jobs may "
        "share the machine: absolute numbers are noisy, the ratios are the figures to read).",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
    ]
