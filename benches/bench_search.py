"""Search and read benchmark: fastflow against MLflow 3.17.2 reading the same store, side by side.

    python benches/bench_search.py            # full run, several minutes
    python benches/bench_search.py --quick    # smaller counts, for a smoke run

Measures what reading a store costs:

- ``search_runs(output_format="pandas")`` over an experiment of 10,000 runs with 20 metrics
  and 10 params each: the DataFrame of every run, and the DataFrame of the runs that a filter
  on a metric and a param selects, ordered by another metric.
- ``MlflowClient.get_metric_history`` of a metric of 1,000,000 points in one run.

fastflow builds both stores once, in a child process, before anything is timed; real MLflow
then checks that it can read them, and both tools read the very same files. Every measurement
runs in a fresh child process that imports its tool and points it at the store outside the
clock, makes one warm-up call and then times repeated calls. The machine this runs on may be
shared and noisy: every figure is a median over repeated calls. Children check the number of
rows or points they get back; the parent checks that both tools return the same runs and
columns. The exit status is nonzero if a measurement failed, the tools disagreed or a target
was not met.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

# The scripts' shared helpers live beside them; this finds them whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import (  # noqa: E402
    ERR,
    BenchError,
    attempter,
    bench_main,
    cell,
    fmt_ratio,
    fmt_seconds,
    fmt_time_ns,
    header_line,
    median,
    mlflow_name,
    plural,
    quotient,
    report,
    spread,
    sqlite_uri,
    table_head,
    tracking_module,
    verdict,
    version_of,
)
from _bench import run_worker as run_script_worker  # noqa: E402

MIN_RATIO = 10.0
# The DataFrame of every run of the experiment: columns straight from the tables.
ALL_RUNS_MIN_RATIO = 50.0

TOOLS = ("fastflow", "mlflow")
SEARCH_EXPERIMENT = "bench"
HISTORY_EXPERIMENT = "bench-history"
HISTORY_KEY = "loss"
METRICS_PER_RUN = 20
PARAMS_PER_RUN = 10
HISTORY_CHUNK = 1_000
READ_MODES = ("raw", "columns", "sampled-320", "sampled-2000")
# Targets of the reads against the sqlite3 floor (fetchall of the same rows).
LIST_OVER_FLOOR = 1.1
COLUMNS_OVER_FLOOR = 0.5
SAMPLE_SECONDS = 0.050
# MLflow's ceiling for a pandas search_runs: every run of the experiment fits under it.
SEARCH_MAX_RESULTS = 100_000
FILTER = "metrics.m0 > 0.5 AND params.p0 = 'v1'"
ORDER_BY = ["metrics.m1 DESC"]
# The two searches: every run, then the filtered and ordered one.
CASES = ("all", "filtered")

WORKER_TIMEOUT_S = 1_800


@dataclass(frozen=True)
class Plan:
    runs: int
    ff_search_trials: int
    mlflow_search_trials: int
    history_points: int
    ff_history_trials: int
    mlflow_history_trials: int

    def search_trials(self, tool: str) -> int:
        return self.ff_search_trials if tool == "fastflow" else self.mlflow_search_trials

    def history_trials(self, tool: str) -> int:
        return self.ff_history_trials if tool == "fastflow" else self.mlflow_history_trials

    def expected_rows(self, case: str) -> int:
        return self.runs if case == "all" else matching_runs(self.runs)


FULL = Plan(
    runs=10_000,
    ff_search_trials=7,
    mlflow_search_trials=3,
    history_points=1_000_000,
    ff_history_trials=7,
    mlflow_history_trials=3,
)
QUICK = Plan(
    runs=2_000,
    ff_search_trials=3,
    mlflow_search_trials=1,
    history_points=200_000,
    ff_history_trials=3,
    mlflow_history_trials=1,
)


# Values are a function of the run's index, so that the parent knows how many runs the filter
# selects without reading the store, and the metrics spread over [0, 1) with ties to order.
def metric_value(run: int, k: int) -> float:
    return ((run * 7919 + k * 104729) % 1000) / 1000


def param_value(run: int, k: int) -> str:
    return f"v{(run + k) % 3}"


def matching_runs(runs: int) -> int:
    return sum(1 for i in range(runs) if metric_value(i, 0) > 0.5 and param_value(i, 0) == "v1")


def count_rows(path: str, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def tracking_client(tool: str, uri: str):
    if tool == "fastflow":
        import fastflow

        return fastflow.MlflowClient(uri)
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def tool_version(tool: str) -> str:
    return tracking_module(tool).__version__


# ---- workers: each runs alone in a child process and returns a JSON-able dict ---------------


def worker_build_runs(workdir: str, path: str, runs: int) -> dict:
    import fastflow
    from fastflow.entities import Metric, Param

    start = time.perf_counter()
    client = fastflow.MlflowClient(sqlite_uri(path))
    experiment_id = client.create_experiment(SEARCH_EXPERIMENT)
    timestamp = int(time.time() * 1000)
    for i in range(runs):
        run_id = client.create_run(experiment_id, run_name=f"run-{i}").info.run_id
        client.log_batch(
            run_id,
            metrics=[
                Metric(f"m{k}", metric_value(i, k), timestamp, 0) for k in range(METRICS_PER_RUN)
            ],
            params=[Param(f"p{k}", param_value(i, k)) for k in range(PARAMS_PER_RUN)],
        )
        client.set_terminated(run_id)
    client.flush()
    return {"experiment_id": experiment_id, "seconds": time.perf_counter() - start}


def worker_build_history(workdir: str, path: str, points: int) -> dict:
    import fastflow
    from fastflow.entities import Metric

    start = time.perf_counter()
    client = fastflow.MlflowClient(sqlite_uri(path))
    experiment_id = client.create_experiment(HISTORY_EXPERIMENT)
    run_id = client.create_run(experiment_id, run_name="history").info.run_id
    timestamp = int(time.time() * 1000)
    for first in range(0, points, HISTORY_CHUNK):
        last = min(points, first + HISTORY_CHUNK)
        metrics = [Metric(HISTORY_KEY, float(i), timestamp, i) for i in range(first, last)]
        client.log_batch(run_id, metrics=metrics)
    client.set_terminated(run_id)
    client.flush()
    return {"run_id": run_id, "seconds": time.perf_counter() - start}


def worker_check(
    workdir: str, search_uri: str, experiment_id: str, history_uri: str, run_id: str
) -> dict:
    import mlflow

    runs = mlflow.MlflowClient(tracking_uri=search_uri).search_runs([experiment_id], max_results=1)
    if len(runs) != 1:
        raise BenchError(f"MLflow found {len(runs)} runs in experiment {experiment_id}, not 1")
    run = mlflow.MlflowClient(tracking_uri=history_uri).get_run(run_id)
    if run.info.status != "FINISHED":
        raise BenchError(f"MLflow reads run {run_id} as {run.info.status}, not FINISHED")
    return {"version": mlflow.__version__}


def check_frame(tool: str, frame, case: str, expected: int) -> None:
    if len(frame) != expected:
        raise BenchError(
            f"{tool} search_runs ({case}) returned {len(frame):,} rows, not {expected:,}"
        )
    if case == "all":
        return
    # A frame of the right length can still hold the wrong runs or order.
    if not frame["metrics.m1"].is_monotonic_decreasing:
        raise BenchError(f"{tool} search_runs ({case}) is not ordered by {ORDER_BY}")
    if not ((frame["metrics.m0"] > 0.5) & (frame["params.p0"] == "v1")).all():
        raise BenchError(f"{tool} search_runs ({case}) returned runs that {FILTER!r} excludes")


def worker_search(
    workdir: str, tool: str, uri: str, experiment_id: str, case: str, trials: int, expected: int
) -> dict:
    tracking = tracking_module(tool)
    tracking.set_tracking_uri(uri)
    kwargs = {
        "experiment_ids": [experiment_id],
        "output_format": "pandas",
        "max_results": SEARCH_MAX_RESULTS,
    }
    if case == "filtered":
        kwargs.update(filter_string=FILTER, order_by=ORDER_BY)
    # Warm-up: the first call imports pandas, opens the store and fills the page cache.
    frame = tracking.search_runs(**kwargs)
    check_frame(tool, frame, case, expected)
    seconds = []
    for _ in range(trials):
        # Freeing the previous frame is not part of the next call.
        del frame
        start = time.perf_counter()
        frame = tracking.search_runs(**kwargs)
        seconds.append(time.perf_counter() - start)
        check_frame(tool, frame, case, expected)
    run_ids = "\n".join(sorted(frame["run_id"])).encode()
    return {
        "seconds": seconds,
        "rows": len(frame),
        "columns": sorted(frame.columns),
        "run_ids": hashlib.sha256(run_ids).hexdigest(),
        "version": tool_version(tool),
    }


def check_history(tool: str, history: list, points: int) -> None:
    if len(history) != points:
        raise BenchError(
            f"{tool} get_metric_history returned {len(history):,} points, not {points:,}"
        )
    # Every point logged once: steps 0 .. points - 1, each with its step as the value.
    total = points * (points - 1) // 2
    values = sum(m.value for m in history)
    steps = sum(m.step for m in history)
    if values != total or steps != total:
        raise BenchError(
            f"{tool} get_metric_history: values sum to {values:,.0f} and steps to {steps:,}, "
            f"not {total:,}"
        )


def _raw_history(path: str, run_id: str) -> list:
    """The floor: Python's sqlite3 fetching the rows get_metric_history reads, in its order."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT key, value, timestamp, step, is_nan FROM metrics "
            "WHERE run_uuid = ? AND key = ? ORDER BY timestamp, step, value",
            (run_id, HISTORY_KEY),
        ).fetchall()
    finally:
        conn.close()


def check_columns(columns: dict, points: int) -> None:
    total = points * (points - 1) // 2
    if len(columns["value"]) != points or int(columns["step"].sum()) != total:
        raise BenchError(f"fastflow's columns hold {len(columns['value']):,} points")
    if float(columns["value"].sum()) != float(total):
        raise BenchError("fastflow's columns: the values do not add up")


def check_sample(sample: list, budget: int, points: int) -> None:
    values = [m.value for m in sample]
    if not 0 < len(sample) <= budget or 0.0 not in values or float(points - 1) not in values:
        raise BenchError(f"a sample of {len(sample)} points lacks the series' extremes")


def worker_history(
    workdir: str, tool: str, uri: str, run_id: str, trials: int, points: int, mode: str = "list"
) -> dict:
    """``mode``: "list" (the tool's get_metric_history), "raw" (sqlite3 fetchall, the
    floor), "columns" (fastflow's numpy columns) or "sampled-N" (fastflow's sample of N)."""
    path = uri[len("sqlite:///") :]
    if mode == "raw":
        read = functools.partial(_raw_history, path, run_id)

        def check(rows):
            if len(rows) != points:
                raise BenchError(f"sqlite3 fetched {len(rows):,} rows")

    elif mode == "columns":
        client = tracking_client(tool, uri)
        read = functools.partial(
            client.get_metric_history, run_id, HISTORY_KEY, output_format="numpy"
        )
        import numpy  # noqa: F401  (imported outside the clock)

        def check(columns):
            check_columns(columns, points)

    elif mode.startswith("sampled-"):
        client = tracking_client(tool, uri)
        budget = int(mode.split("-", 1)[1])
        read = functools.partial(client.get_metric_history_sampled, run_id, HISTORY_KEY, budget)

        def check(sample):
            check_sample(sample, budget, points)

    else:
        client = tracking_client(tool, uri)
        read = functools.partial(client.get_metric_history, run_id, HISTORY_KEY)

        def check(history):
            check_history(tool, history, points)

    # The first read in the process, with the store open and its pages in the page cache
    # but nothing kept by the tool itself (fastflow keeps series it read); then repeats.
    if mode != "raw" and tool == "fastflow":
        client.search_experiments()
    _raw_history(path, run_id)
    start = time.perf_counter()
    result = read()
    first = time.perf_counter() - start
    check(result)
    seconds = []
    for _ in range(trials):
        # Freeing the previous result is not part of the next call.
        del result
        start = time.perf_counter()
        result = read()
        seconds.append(time.perf_counter() - start)
        check(result)
    return {"seconds": seconds, "first": first, "points": points, "version": tool_version(tool)}


WORKERS: dict[str, Callable[..., dict]] = {
    "build_runs": worker_build_runs,
    "build_history": worker_build_history,
    "check": worker_check,
    "search": worker_search,
    "history": worker_history,
}


# ---- the parent: runs workers, collects medians, prints the table ---------------------------


def run_worker(root: str, name: str, **params) -> dict:
    # The stores a worker reads are in the root, shared by every worker.
    return run_script_worker(__file__, root, name, WORKER_TIMEOUT_S, **params)


@dataclass
class Stores:
    search_path: str
    history_path: str
    experiment_id: str = ""
    run_id: str = ""
    runs_build_s: float = 0.0
    history_build_s: float = 0.0

    @property
    def search_uri(self) -> str:
        return sqlite_uri(self.search_path)

    @property
    def history_uri(self) -> str:
        return sqlite_uri(self.history_path)


@dataclass
class Results:
    stores: Optional[Stores] = None
    mlflow_version: Optional[str] = None
    # By case, then by tool: a worker's result.
    search: dict = field(default_factory=lambda: {case: {} for case in CASES})
    # By tool: a worker's result.
    history: dict = field(default_factory=dict)
    # fastflow's other ways to read a history, and the sqlite3 floor ("raw"), by mode.
    reads: dict = field(default_factory=dict)


def build_stores(plan: Plan, root: str) -> Stores:
    stores = Stores(os.path.join(root, "search.db"), os.path.join(root, "history.db"))
    out = run_worker(root, "build_runs", path=stores.search_path, runs=plan.runs)
    stores.experiment_id, stores.runs_build_s = out["experiment_id"], out["seconds"]
    out = run_worker(root, "build_history", path=stores.history_path, points=plan.history_points)
    stores.run_id, stores.history_build_s = out["run_id"], out["seconds"]
    expected = (
        (stores.search_path, "runs", plan.runs),
        (stores.search_path, "latest_metrics", plan.runs * METRICS_PER_RUN),
        (stores.search_path, "params", plan.runs * PARAMS_PER_RUN),
        (stores.history_path, "metrics", plan.history_points),
    )
    for path, table, rows in expected:
        found = count_rows(path, table)
        if found != rows:
            raise BenchError(
                f"{found:,} of {rows:,} rows were in {os.path.basename(path)}'s {table} table "
                "after fastflow built it"
            )
    return stores


def compare_search(case: str, by_tool: dict) -> None:
    ff, ml = by_tool.get("fastflow"), by_tool.get("mlflow")
    if ff is None or ml is None:
        return
    if ff["rows"] != ml["rows"]:
        raise BenchError(f"fastflow returned {ff['rows']:,} rows, MLflow {ml['rows']:,}")
    if ff["columns"] != ml["columns"]:
        only_ff = sorted(set(ff["columns"]) - set(ml["columns"]))
        only_ml = sorted(set(ml["columns"]) - set(ff["columns"]))
        raise BenchError(f"columns differ: only fastflow's {only_ff}, only MLflow's {only_ml}")
    if ff["run_ids"] != ml["run_ids"]:
        raise BenchError(f"both returned {ff['rows']:,} rows, but not the same runs")


def measure(plan: Plan, root: str, errors: dict) -> Results:
    res = Results()
    attempt = attempter(errors)

    def build() -> None:
        res.stores = build_stores(plan, root)

    label = (
        f"fastflow builds the stores: {plan.runs:,} runs, and {plan.history_points:,} points "
        "in one run"
    )
    if not attempt(label, build):
        return res
    stores = res.stores

    def check() -> None:
        out = run_worker(
            root,
            "check",
            search_uri=stores.search_uri,
            experiment_id=stores.experiment_id,
            history_uri=stores.history_uri,
            run_id=stores.run_id,
        )
        res.mlflow_version = out["version"]

    if not attempt("MLflow reads the stores", check):
        return res

    for case in CASES:
        expected = plan.expected_rows(case)
        for tool in TOOLS:
            trials = plan.search_trials(tool)

            def search(case=case, tool=tool, trials=trials, expected=expected) -> None:
                res.search[case][tool] = run_worker(
                    root,
                    "search",
                    tool=tool,
                    uri=stores.search_uri,
                    experiment_id=stores.experiment_id,
                    case=case,
                    trials=trials,
                    expected=expected,
                )

            attempt(f"{tool}: search_runs ({case}, {expected:,} rows), {trials} x", search)

        def compare(case=case) -> None:
            compare_search(case, res.search[case])

        attempt(f"fastflow and MLflow agree on search_runs ({case})", compare)

    for tool in TOOLS:
        trials = plan.history_trials(tool)

        def history(tool=tool, trials=trials) -> None:
            res.history[tool] = run_worker(
                root,
                "history",
                tool=tool,
                uri=stores.history_uri,
                run_id=stores.run_id,
                trials=trials,
                points=plan.history_points,
            )

        attempt(f"{tool}: get_metric_history ({plan.history_points:,} points), {trials} x", history)

    for mode in READ_MODES:
        trials = plan.ff_history_trials

        def read(mode=mode, trials=trials) -> None:
            res.reads[mode] = run_worker(
                root,
                "history",
                tool="fastflow",
                uri=stores.history_uri,
                run_id=stores.run_id,
                trials=trials,
                points=plan.history_points,
                mode=mode,
            )

        attempt(f"history read ({mode}, {plan.history_points:,} points), {trials} x", read)
    return res


def case_label(plan: Plan, case: str) -> str:
    if case == "all":
        return (
            f"search_runs -> DataFrame, all {plan.runs:,} runs "
            f"({METRICS_PER_RUN} metrics, {PARAMS_PER_RUN} params each)"
        )
    return f"search_runs -> DataFrame, filter + order_by* ({plan.expected_rows(case):,} runs)"


def build_rows(plan: Plan, res: Results) -> tuple:
    """Rows of (measurement, fastflow, MLflow, ratio, target, result), and the targets as
    (name, verdict). Every ratio is MLflow's time / fastflow's time, so above 1 means fastflow
    is faster."""
    rows, targets = [], []

    def timed_row(label: str, target_name: str, by_tool: dict, least: float = MIN_RATIO) -> None:
        ff_out, ml_out = by_tool.get("fastflow"), by_tool.get("mlflow")
        ff = median(ff_out["seconds"]) if ff_out else None
        ml = median(ml_out["seconds"]) if ml_out else None
        ratio = quotient(ml, ff)
        result = verdict(ratio >= least) if ratio is not None else ERR
        targets.append((target_name, result))
        rows.append(
            (
                label,
                cell(ff, fmt_seconds),
                cell(ml, fmt_seconds),
                cell(ratio, fmt_ratio),
                f">= {least:.0f}x",
                result,
            )
        )

    for case in CASES:
        least = ALL_RUNS_MIN_RATIO if case == "all" else MIN_RATIO
        timed_row(case_label(plan, case), f"search_runs ({case})", res.search[case], least)
    timed_row(
        f"get_metric_history, {plan.history_points:,} points of one metric",
        "get_metric_history",
        res.history,
    )

    def seconds_of(out):
        return median(out["seconds"]) if out else None

    def first_of(out):
        return out.get("first") if out else None

    floor = seconds_of(res.reads.get("raw"))
    for label, out, most, when in (
        (
            "get_metric_history (lazy list), first read vs sqlite3 fetchall**",
            res.history.get("fastflow"),
            LIST_OVER_FLOOR,
            first_of,
        ),
        (
            "get_metric_history (lazy list), repeated vs sqlite3 fetchall**",
            res.history.get("fastflow"),
            LIST_OVER_FLOOR,
            seconds_of,
        ),
        (
            "get_metric_history columns, first read vs sqlite3 fetchall**",
            res.reads.get("columns"),
            COLUMNS_OVER_FLOOR,
            first_of,
        ),
        (
            "get_metric_history columns, repeated vs sqlite3 fetchall**",
            res.reads.get("columns"),
            COLUMNS_OVER_FLOOR,
            seconds_of,
        ),
    ):
        ours = when(out)
        over = quotient(ours, floor)
        result = verdict(over <= most) if over is not None else ERR
        targets.append((label.rstrip("*"), result))
        rows.append(
            (
                label,
                cell(ours, fmt_seconds),
                cell(floor, fmt_seconds),
                cell(quotient(floor, ours), fmt_ratio),
                f"<= {most}x floor",
                result,
            )
        )
    for budget in (320, 2000):
        out = res.reads.get(f"sampled-{budget}")
        first = first_of(out)
        label = f"get_metric_history_sampled to {budget} points, first read (reads SQLite)"
        rows.append((label, cell(first, fmt_seconds), "-", "-", "-", "-"))
        ours = seconds_of(out)
        result = verdict(ours < SAMPLE_SECONDS) if ours is not None else ERR
        label = f"get_metric_history_sampled to {budget} points, series already read"
        targets.append((label, result))
        rows.append(
            (label, cell(ours, fmt_seconds), "-", "-", f"< {SAMPLE_SECONDS * 1e3:.0f} ms", result)
        )
    return rows, targets


def footnotes() -> list:
    """Notes, each a list of lines that starts with the asterisks marking its rows."""
    return [
        [f'* filter_string="{FILTER}", order_by={ORDER_BY}'],
        [
            "** the MLflow column holds the floor here: Python's sqlite3 fetchall of the same",
            "rows in the same order; ratio = floor time / fastflow time.",
        ],
    ]


def details(plan: Plan, res: Results) -> list:
    lines = []
    stores = res.stores
    if stores is not None and stores.run_id:
        lines.append(
            f"store built once by fastflow: {plan.runs:,} x (create_run + log_batch of "
            f"{METRICS_PER_RUN} metrics and {PARAMS_PER_RUN} params + set_terminated), then "
            f"flush, in {fmt_seconds(stores.runs_build_s)}"
        )
        lines.append(
            f"store built once by fastflow: {plan.history_points:,} points in log_batch calls "
            f"of {HISTORY_CHUNK:,}, then flush, in {fmt_seconds(stores.history_build_s)}"
        )
    for case in CASES:
        for tool in TOOLS:
            out = res.search[case].get(tool)
            if out is None:
                continue
            name = "fastflow" if tool == "fastflow" else "MLflow"
            what = (
                f"{name} search_runs ({case}), {out['rows']:,} rows x {len(out['columns'])} "
                f"columns, {plural(len(out['seconds']), 'call')} after a warm-up"
            )
            lines.append(f"{what}: {spread(out['seconds'], fmt_seconds)}")
    for tool in TOOLS:
        out = res.history.get(tool)
        if out is None:
            continue
        name = "fastflow" if tool == "fastflow" else "MLflow"
        per_point = median(out["seconds"]) / out["points"] * 1e9
        what = (
            f"{name} get_metric_history, {out['points']:,} points, "
            f"{plural(len(out['seconds']), 'call')} after a warm-up"
        )
        lines.append(
            f"{what}: {spread(out['seconds'], fmt_seconds)} ({fmt_time_ns(per_point)} per point)"
        )
    return lines


def present(plan: Plan, mode: str, res: Results, errors: dict) -> int:
    rows, targets = build_rows(plan, res)
    mlflow_column = mlflow_name(res.mlflow_version)
    return report(
        header_line(mlflow_column, [f"pandas {version_of('pandas')}"], mode),
        table_head(mlflow_column),
        rows,
        notes=footnotes(),
        legend=[
            "Both tools read the same SQLite files, which fastflow wrote. Ratio = MLflow time /",
            "fastflow time; above 1 means fastflow is faster. All figures are medians over "
            "repeated",
            "calls, each tool in its own fresh process:",
        ],
        details=details(plan, res),
        targets=targets,
        errors=errors,
    )


def main(argv: Optional[list] = None) -> int:
    return bench_main(__doc__, argv, WORKERS, "bench_search", (FULL, QUICK), measure, present)


if __name__ == "__main__":
    sys.exit(main())
