"""Core benchmark: fastflow against MLflow 3.17.2 and raw sqlite3, side by side in one run.

    python benches/bench_core.py            # full run, about a minute and a half
    python benches/bench_core.py --quick    # smaller counts, for a smoke run

Measures the per-call cost of ``log_metric`` inside an active run, the wall time until a
million metrics are durable (against ``sqlite3.executemany`` of the same rows into the same
schema) and the import time. Prints one table, as plain text and as Markdown.

Every measurement runs in a fresh child process with its own SQLite store in a temporary
directory, so the tools never share a database file, a writer thread or imported state. The
machine this runs on may be shared and noisy: every figure is a median over repeated trials.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

# The scripts' shared helpers live beside them; this finds them whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import (  # noqa: E402
    ERR,
    NONE,
    BenchError,
    attempter,
    bench_main,
    fmt_ratio,
    fmt_seconds,
    fmt_time_ns,
    header_line,
    mlflow_name,
    report,
    run_child,
    spread,
    sqlite_uri,
    table_head,
)
from _bench import run_worker as run_script_worker  # noqa: E402

MAX_CALL_NS = 1_000
MIN_SYNC_RATIO = 1_000.0
MIN_DURABLE_RATIO = 0.70
MAX_IMPORT_S = 0.050

INSERT_METRICS = (
    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)"
)

WORKER_TIMEOUT_S = 900
IMPORT_TIMEOUT_S = 120


@dataclass(frozen=True)
class Plan:
    ff_trials: int
    ff_calls: int
    sync_trials: int
    sync_calls: int
    async_trials: int
    async_calls: int
    durable_metrics: int
    durable_trials: int
    import_runs: int


FULL = Plan(
    ff_trials=20,
    ff_calls=10_000,
    sync_trials=5,
    sync_calls=40,
    async_trials=5,
    async_calls=100,
    durable_metrics=1_000_000,
    durable_trials=3,
    import_runs=5,
)
QUICK = Plan(
    ff_trials=5,
    ff_calls=10_000,
    sync_trials=3,
    sync_calls=20,
    async_trials=3,
    async_calls=50,
    durable_metrics=100_000,
    durable_trials=2,
    import_runs=3,
)


def count_metric_rows(path: str, run_id: str) -> int:
    conn = sqlite3.connect(path)
    try:
        query = "SELECT COUNT(*) FROM metrics WHERE run_uuid = ?"
        return conn.execute(query, (run_id,)).fetchone()[0]
    finally:
        conn.close()


# ---- workers: each runs alone in a child process and returns a JSON-able dict ---------------


def worker_fastflow_calls(workdir: str, trials: int, calls: int) -> dict:
    import fastflow

    fastflow.set_tracking_uri(sqlite_uri(os.path.join(workdir, "fastflow.db")))
    per_call_ns = []
    warmup = 1_000
    with fastflow.start_run():
        # Warm-up: the first calls resolve the run and start the writer thread.
        for i in range(warmup):
            fastflow.log_metric("loss", 0.5, step=i)
        fastflow.flush()
        step = warmup
        for _ in range(trials):
            start = time.perf_counter_ns()
            for i in range(step, step + calls):
                fastflow.log_metric("loss", 0.5, step=i)
            per_call_ns.append((time.perf_counter_ns() - start) / calls)
            step += calls
            # Each trial starts with an empty queue, as MLflow's async trials do; sustained
            # throughput with a full queue is what the durable benchmark measures.
            fastflow.flush()
    return {"per_call_ns": per_call_ns}


def worker_mlflow_calls(
    workdir: str, sync_trials: int, sync_calls: int, async_trials: int, async_calls: int
) -> dict:
    import mlflow

    mlflow.set_tracking_uri(sqlite_uri(os.path.join(workdir, "mlflow.db")))
    sync_ns, async_ns = [], []
    step = 0
    with mlflow.start_run():
        # Warm-up: the first call opens the store's session and caches the run.
        mlflow.log_metric("loss", 0.5, step=step)
        step += 1
        for _ in range(sync_trials):
            start = time.perf_counter_ns()
            for i in range(step, step + sync_calls):
                mlflow.log_metric("loss", 0.5, step=i)
            sync_ns.append((time.perf_counter_ns() - start) / sync_calls)
            step += sync_calls
        # Warm-up: the first asynchronous call starts MLflow's logging thread pool.
        mlflow.log_metric("loss", 0.5, step=step, synchronous=False)
        step += 1
        mlflow.flush_async_logging()
        for _ in range(async_trials):
            start = time.perf_counter_ns()
            for i in range(step, step + async_calls):
                mlflow.log_metric("loss", 0.5, step=i, synchronous=False)
            async_ns.append((time.perf_counter_ns() - start) / async_calls)
            step += async_calls
            mlflow.flush_async_logging()
    return {"sync_ns": sync_ns, "async_ns": async_ns, "version": mlflow.__version__}


def worker_fastflow_durable(workdir: str, metrics: int) -> dict:
    import fastflow

    path = os.path.join(workdir, "fastflow.db")
    fastflow.set_tracking_uri(sqlite_uri(path))
    run_id = fastflow.start_run().info.run_id
    start = time.perf_counter()
    for i in range(metrics):
        fastflow.log_metric("loss", float(i), step=i)
    fastflow.flush()
    seconds = time.perf_counter() - start
    fastflow.end_run()
    return {"seconds": seconds, "rows": count_metric_rows(path, run_id)}


def worker_raw_durable(workdir: str, metrics: int) -> dict:
    import fastflow

    # fastflow creates the store so that the schema, indexes and foreign keys are exactly
    # the ones its own writer inserts into.
    path = os.path.join(workdir, "raw.db")
    run_id = fastflow.MlflowClient(sqlite_uri(path)).create_run("0").info.run_id
    fastflow.flush()
    timestamp = int(time.time() * 1000)
    rows = [("loss", float(i), timestamp, run_id, i, 0) for i in range(metrics)]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    # fastflow commits with synchronous=FULL; the baseline must be as durable.
    conn.execute("PRAGMA synchronous=FULL")
    start = time.perf_counter()
    conn.executemany(INSERT_METRICS, rows)
    conn.commit()
    seconds = time.perf_counter() - start
    conn.close()
    return {"seconds": seconds, "rows": count_metric_rows(path, run_id)}


WORKERS: dict[str, Callable[..., dict]] = {
    "fastflow-calls": worker_fastflow_calls,
    "mlflow-calls": worker_mlflow_calls,
    "fastflow-durable": worker_fastflow_durable,
    "raw-durable": worker_raw_durable,
}


# ---- the parent: runs workers, collects medians, prints the table ---------------------------


def run_worker(root: str, name: str, **params) -> dict:
    return run_script_worker(__file__, root, name, WORKER_TIMEOUT_S, **params)


def import_seconds(root: str, module: str, runs: int) -> list:
    code = f"import time;t=time.perf_counter();import {module};print(time.perf_counter()-t)"
    cmd = [sys.executable, "-c", code]
    # One discarded run, so that neither module pays for a cold page cache.
    run_child(cmd, cwd=root, timeout=IMPORT_TIMEOUT_S)
    runs_out = [run_child(cmd, cwd=root, timeout=IMPORT_TIMEOUT_S) for _ in range(runs)]
    return [float(out.strip().splitlines()[-1]) for out in runs_out]


def durable_trials(root: str, name: str, plan: Plan) -> list:
    seconds = []
    for _ in range(plan.durable_trials):
        result = run_worker(root, name, metrics=plan.durable_metrics)
        if result["rows"] != plan.durable_metrics:
            raise BenchError(
                f"{result['rows']:,} of {plan.durable_metrics:,} metrics were in the store "
                "after flush"
            )
        seconds.append(result["seconds"])
    return seconds


def fmt_rate(rows_per_s: float) -> str:
    return f"{rows_per_s / 1e3:,.0f}k rows/s"


def verdict(ok: bool) -> str:
    # This script's targets do not set the exit status (only errors do): a missed one is
    # reported as a miss, not as a failure.
    return "PASS" if ok else "MISS"


@dataclass
class Results:
    ff_call_ns: Optional[list] = None
    mlflow_sync_ns: Optional[list] = None
    mlflow_async_ns: Optional[list] = None
    mlflow_version: Optional[str] = None
    ff_durable_s: Optional[list] = None
    raw_durable_s: Optional[list] = None
    ff_import_s: Optional[list] = None
    mlflow_import_s: Optional[list] = None


def measure(plan: Plan, root: str, errors: dict) -> Results:
    res = Results()
    attempt = attempter(errors)

    def ff_calls() -> None:
        out = run_worker(root, "fastflow-calls", trials=plan.ff_trials, calls=plan.ff_calls)
        res.ff_call_ns = out["per_call_ns"]

    def mlflow_calls() -> None:
        out = run_worker(
            root,
            "mlflow-calls",
            sync_trials=plan.sync_trials,
            sync_calls=plan.sync_calls,
            async_trials=plan.async_trials,
            async_calls=plan.async_calls,
        )
        res.mlflow_sync_ns, res.mlflow_async_ns = out["sync_ns"], out["async_ns"]
        res.mlflow_version = out["version"]

    def ff_durable() -> None:
        res.ff_durable_s = durable_trials(root, "fastflow-durable", plan)

    def raw_durable() -> None:
        res.raw_durable_s = durable_trials(root, "raw-durable", plan)

    def ff_import() -> None:
        res.ff_import_s = import_seconds(root, "fastflow", plan.import_runs)

    def mlflow_import() -> None:
        res.mlflow_import_s = import_seconds(root, "mlflow", plan.import_runs)

    attempt("fastflow log_metric per call", ff_calls)
    attempt("MLflow log_metric per call", mlflow_calls)
    attempt("fastflow durable metrics", ff_durable)
    attempt("raw sqlite3 durable metrics", raw_durable)
    attempt("import fastflow", ff_import)
    attempt("import mlflow", mlflow_import)
    return res


def build_rows(plan: Plan, res: Results, mlflow_name: str) -> list:
    """Rows of (measurement, fastflow, baseline, ratio, target, result); every ratio is
    baseline time / fastflow time, so above 1 means fastflow is faster."""
    rows = []
    call = statistics.median(res.ff_call_ns) if res.ff_call_ns else None
    call_cell = fmt_time_ns(call) if call is not None else ERR
    rows.append(
        (
            "log_metric(key, value, step=i), per call",
            call_cell,
            NONE,
            NONE,
            f"<= {fmt_time_ns(MAX_CALL_NS)}",
            verdict(call <= MAX_CALL_NS) if call is not None else ERR,
        )
    )
    for label, samples, target in (
        ("synchronous", res.mlflow_sync_ns, MIN_SYNC_RATIO),
        ("synchronous=False", res.mlflow_async_ns, None),
    ):
        base = statistics.median(samples) if samples else None
        ratio = base / call if base is not None and call is not None else None
        if target is None:
            result = NONE
        else:
            result = verdict(ratio >= target) if ratio is not None else ERR
        rows.append(
            (
                f"  vs {mlflow_name} log_metric, {label}",
                call_cell,
                fmt_time_ns(base) if base is not None else ERR,
                fmt_ratio(ratio) if ratio is not None else ERR,
                f">= {target:,.0f}x" if target is not None else NONE,
                result,
            )
        )

    n = plan.durable_metrics
    ff_rate = statistics.median([n / s for s in res.ff_durable_s]) if res.ff_durable_s else None
    raw_rate = statistics.median([n / s for s in res.raw_durable_s]) if res.raw_durable_s else None
    rate_ratio = ff_rate / raw_rate if ff_rate is not None and raw_rate is not None else None
    rows.append(
        (
            f"{n:,} metrics durable, vs raw sqlite3 executemany",
            fmt_rate(ff_rate) if ff_rate is not None else ERR,
            fmt_rate(raw_rate) if raw_rate is not None else ERR,
            fmt_ratio(rate_ratio) if rate_ratio is not None else ERR,
            f">= {MIN_DURABLE_RATIO:.2f}x",
            verdict(rate_ratio >= MIN_DURABLE_RATIO) if rate_ratio is not None else ERR,
        )
    )
    ff_wall = statistics.median(res.ff_durable_s) if res.ff_durable_s else None
    raw_wall = statistics.median(res.raw_durable_s) if res.raw_durable_s else None
    rows.append(
        (
            "  wall time (log + flush / executemany + commit)",
            fmt_seconds(ff_wall) if ff_wall is not None else ERR,
            fmt_seconds(raw_wall) if raw_wall is not None else ERR,
            fmt_ratio(raw_wall / ff_wall) if ff_wall and raw_wall else ERR,
            NONE,
            NONE,
        )
    )

    ff_imp = statistics.median(res.ff_import_s) if res.ff_import_s else None
    ml_imp = statistics.median(res.mlflow_import_s) if res.mlflow_import_s else None
    rows.append(
        (
            "import time, vs import mlflow",
            fmt_seconds(ff_imp) if ff_imp is not None else ERR,
            fmt_seconds(ml_imp) if ml_imp is not None else ERR,
            fmt_ratio(ml_imp / ff_imp) if ff_imp and ml_imp else ERR,
            f"< {fmt_seconds(MAX_IMPORT_S)}",
            verdict(ff_imp < MAX_IMPORT_S) if ff_imp is not None else ERR,
        )
    )
    return rows


def details(plan: Plan, res: Results, mlflow_name: str) -> list:
    n = plan.durable_metrics
    trials = plan.durable_trials
    runs = plan.import_runs
    parts = (
        (
            f"fastflow log_metric, {plan.ff_trials} x {plan.ff_calls:,} calls, per call",
            res.ff_call_ns,
            fmt_time_ns,
        ),
        (
            f"{mlflow_name} sync, {plan.sync_trials} x {plan.sync_calls} calls, per call",
            res.mlflow_sync_ns,
            fmt_time_ns,
        ),
        (
            f"{mlflow_name} async, {plan.async_trials} x {plan.async_calls} calls, per call",
            res.mlflow_async_ns,
            fmt_time_ns,
        ),
        (f"fastflow {n:,} x log_metric + flush, {trials} x", res.ff_durable_s, fmt_seconds),
        (f"sqlite3 executemany {n:,} rows + commit, {trials} x", res.raw_durable_s, fmt_seconds),
        (f"import fastflow, {runs} fresh processes", res.ff_import_s, fmt_seconds),
        (f"import mlflow, {runs} fresh processes", res.mlflow_import_s, fmt_seconds),
    )
    return [f"{label}: {spread(values, fmt)}" for label, values, fmt in parts if values]


def present(plan: Plan, mode: str, res: Results, errors: dict) -> int:
    baseline = mlflow_name(res.mlflow_version)
    return report(
        header_line(baseline, [], mode),
        table_head("Baseline"),
        build_rows(plan, res, baseline),
        legend=[
            "Ratio = baseline time / fastflow time (durable: fastflow rows/s / raw rows/s);",
            "above 1 means fastflow is faster. All figures are medians over repeated trials:",
        ],
        details=details(plan, res, baseline),
        targets=None,
        errors=errors,
    )


def main(argv: Optional[list] = None) -> int:
    return bench_main(__doc__, argv, WORKERS, "bench_core", (FULL, QUICK), measure, present)


if __name__ == "__main__":
    sys.exit(main())
