"""Spool benchmark: what journaling every queued point costs, spool on against spool off
(``FASTFLOW_SPOOL=0``), side by side in one run.

    python benches/bench_spool.py            # full run, a few minutes
    python benches/bench_spool.py --quick    # smaller counts, for a smoke run

Measures the per-call cost of ``log_metric`` inside an active run and the wall time until a
million metrics are durable, each trial in a fresh child process with its own store, the two
settings taking turns so that a change in the machine's load falls on both. Targets: per
call within 10% of the spool off, durable throughput at least 0.9 of it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_core  # noqa: E402
from _bench import (  # noqa: E402
    attempter,
    bench_main,
    fmt_ratio,
    fmt_seconds,
    fmt_time_ns,
    median,
    quotient,
    report,
    run_worker,
    spread,
    verdict,
)

MAX_CALL_RATIO = 1.10
MIN_DURABLE_RATIO = 0.90
WORKER_TIMEOUT_S = 900


@dataclass(frozen=True)
class Plan:
    rounds: int
    call_trials: int
    calls: int
    durable_metrics: int


FULL = Plan(rounds=5, call_trials=20, calls=10_000, durable_metrics=1_000_000)
QUICK = Plan(rounds=2, call_trials=5, calls=10_000, durable_metrics=100_000)


def _spool(setting: str) -> None:
    # Read when the store is first opened, which the worker does after this.
    os.environ["FASTFLOW_SPOOL"] = setting


def worker_calls(workdir: str, spool: str, trials: int, calls: int) -> dict:
    _spool(spool)
    return bench_core.worker_fastflow_calls(workdir, trials, calls)


def worker_durable(workdir: str, spool: str, metrics: int) -> dict:
    _spool(spool)
    return bench_core.worker_fastflow_durable(workdir, metrics)


WORKERS = {"calls": worker_calls, "durable": worker_durable}


@dataclass
class Results:
    call_ns: dict = field(default_factory=lambda: {"1": [], "0": []})
    durable_s: dict = field(default_factory=lambda: {"1": [], "0": []})


def measure(plan: Plan, root: str, errors: dict) -> Results:
    res = Results()
    attempt = attempter(errors)

    def one_round() -> None:
        for spool in ("1", "0"):
            out = run_worker(
                __file__,
                root,
                "calls",
                WORKER_TIMEOUT_S,
                spool=spool,
                trials=plan.call_trials,
                calls=plan.calls,
            )
            # The median of a process's trials stands for that process.
            res.call_ns[spool].append(median(out["per_call_ns"]))
            out = run_worker(
                __file__,
                root,
                "durable",
                WORKER_TIMEOUT_S,
                spool=spool,
                metrics=plan.durable_metrics,
            )
            if out["rows"] != plan.durable_metrics:
                raise RuntimeError(f"{out['rows']:,} of {plan.durable_metrics:,} rows after flush")
            res.durable_s[spool].append(out["seconds"])

    for index in range(plan.rounds):
        attempt(f"round {index + 1}", one_round)
    return res


def present(plan: Plan, mode: str, res: Results, errors: dict) -> int:
    on_ns, off_ns = median(res.call_ns["1"]), median(res.call_ns["0"])
    on_s, off_s = median(res.durable_s["1"]), median(res.durable_s["0"])
    call_ratio = quotient(on_ns, off_ns)
    # Throughput ratio: spool-on rows/s over spool-off rows/s.
    durable_ratio = quotient(off_s, on_s)
    rate = lambda s: f"{plan.durable_metrics / s / 1e3:,.0f}k rows/s"  # noqa: E731
    rows = [
        (
            "log_metric per call",
            fmt_time_ns(on_ns) if on_ns else "-",
            fmt_time_ns(off_ns) if off_ns else "-",
            fmt_ratio(call_ratio) if call_ratio else "-",
            f"<= {MAX_CALL_RATIO:.2f}x",
        ),
        (
            f"{plan.durable_metrics:,} metrics durable",
            rate(on_s) if on_s else "-",
            rate(off_s) if off_s else "-",
            fmt_ratio(durable_ratio) if durable_ratio else "-",
            f">= {MIN_DURABLE_RATIO:.2f}x",
        ),
    ]
    targets = [
        ("per call", verdict(call_ratio is not None and call_ratio <= MAX_CALL_RATIO)),
        ("durable", verdict(durable_ratio is not None and durable_ratio >= MIN_DURABLE_RATIO)),
    ]
    details = [
        f"per call, spool on: {spread(res.call_ns['1'], fmt_time_ns)}; "
        f"off: {spread(res.call_ns['0'], fmt_time_ns)} (medians of each process's trials)",
        f"durable, spool on: {spread(res.durable_s['1'], fmt_seconds)}; "
        f"off: {spread(res.durable_s['0'], fmt_seconds)}",
    ]
    return report(
        f"fastflow spool on vs off ({mode} run, {plan.rounds} rounds, fresh process per trial)",
        ("Figure", "Spool on", "Spool off", "Ratio", "Target"),
        rows,
        legend=["Ratio = spool on / spool off (per call), rows/s on / rows/s off (durable)."],
        details=details,
        targets=targets,
        errors=errors,
    )


def main(argv: Optional[list] = None) -> int:
    return bench_main(__doc__, argv, WORKERS, "bench_spool", (FULL, QUICK), measure, present)


if __name__ == "__main__":
    sys.exit(main())
