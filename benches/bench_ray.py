"""Multi-process and Ray Tune benchmark: fastflow against MLflow 3.17.2, side by side in one run.

    python benches/bench_ray.py            # full run, a few minutes
    python benches/bench_ray.py --quick    # smaller counts, for a smoke run

Measures what logging costs when many processes share one SQLite store:

- 1 and 8 OS processes each log into their own run of one store. Each worker times its
  logging loop alone (the per-call cost); the parent times from the moment it lets the
  workers start logging until every worker's run has ended with its points durable, and
  then counts the points in the ``metrics`` table. MLflow's synchronous ``log_metric`` costs
  milliseconds, so its workers log far fewer points than fastflow's: those rows compare
  rates (points/s), not wall times.
- A Ray Tune grid sweep whose function trainables log through each tool's ``setup_mlflow``
  (fastflow's ``fastflow.ray.setup_mlflow`` and Ray's own, with real MLflow). Trials time
  their logging calls and report them to Tune; the sweep is timed from ``Tuner.fit()`` until
  its points are durable, and both tools log the same number of points.
- Ray tasks that log through the funnel (fastflow only): each task logs a series into its own
  child run of the driver's run, once with ``FASTFLOW_RAY_FUNNEL=always`` (the points travel
  to a Ray actor on the driver's node, which commits them) and once with ``never`` (each
  worker writes the store itself, the baseline). Tasks time their logging loop; the driver
  times from submitting the tasks until ``ray.get`` has all of them, when their runs have
  ended and their points are durable.

Every measurement runs in fresh child processes with its own SQLite store in a temporary
directory, so the tools never share a database file, a writer thread or imported state. The
machine this runs on may be shared and noisy: every figure is a median over repeated trials.
The exit status is nonzero if a measurement failed, points were missing from a store or a
target was not met.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

# The scripts' shared helpers live beside them; this finds them whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import (  # noqa: E402
    ERR,
    NONE,
    BenchError,
    attempter,
    bench_main,
    cell,
    child_env,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    fmt_time_ns,
    header_line,
    kill_group,
    median,
    mlflow_name,
    plural,
    quotient,
    report,
    run_json,
    spread,
    sqlite_uri,
    table_head,
    tail,
    tracking_module,
    verdict,
    version_of,
    worker_cmd,
)

MAX_WORKER_CALL_NS = 2_000
MIN_SCALING = 0.60

TOOLS = ("fastflow", "mlflow")
TUNE_EXPERIMENT = "bench-ray-tune"
FUNNEL_ENV = "FASTFLOW_RAY_FUNNEL"
# The measured path first, then its baseline.
FUNNEL_MODES = ("always", "never")

WORKER_TIMEOUT_S = 900
# Besides MLFLOW_*, a caller's FASTFLOW_RAY_* settings (funnel mode, a driver context) would
# change what is measured.
CHILD_ENV_DROPS = ("MLFLOW_", "FASTFLOW_RAY_")


@dataclass(frozen=True)
class Plan:
    processes: int
    ff_points: int
    mlflow_points: int
    ff_trials: int
    mlflow_trials: int
    tune_trials: int
    tune_iterations: int
    tune_points: int
    tune_sweeps: int
    ray_tasks: int
    ray_points: int
    ray_trials: int

    def points(self, tool: str) -> int:
        return self.ff_points if tool == "fastflow" else self.mlflow_points

    def trials(self, tool: str) -> int:
        return self.ff_trials if tool == "fastflow" else self.mlflow_trials

    @property
    def tune_total(self) -> int:
        return self.tune_trials * self.tune_iterations * self.tune_points

    @property
    def ray_total(self) -> int:
        return self.ray_tasks * self.ray_points


FULL = Plan(
    processes=8,
    ff_points=100_000,
    mlflow_points=500,
    ff_trials=5,
    mlflow_trials=3,
    tune_trials=8,
    tune_iterations=20,
    tune_points=50,
    tune_sweeps=2,
    ray_tasks=4,
    ray_points=100_000,
    ray_trials=3,
)
QUICK = Plan(
    processes=8,
    ff_points=20_000,
    mlflow_points=100,
    ff_trials=2,
    mlflow_trials=1,
    tune_trials=4,
    tune_iterations=5,
    tune_points=50,
    tune_sweeps=1,
    ray_tasks=2,
    ray_points=20_000,
    ray_trials=1,
)


def points_per_run(path: str) -> dict:
    conn = sqlite3.connect(path)
    try:
        query = "SELECT run_uuid, COUNT(*) FROM metrics GROUP BY run_uuid"
        return dict(conn.execute(query).fetchall())
    finally:
        conn.close()


# ---- workers: each runs alone in a child process and returns a JSON-able dict ---------------


def worker_store(workdir: str, tool: str, uri: str) -> dict:
    # Workers that all find an empty file would race on creating the schema; the store and
    # its default experiment exist before any of them starts.
    tracking = tracking_module(tool)
    if tool == "fastflow":
        tracking.MlflowClient(uri)
        tracking.flush()
    else:
        tracking.set_tracking_uri(uri)
        tracking.MlflowClient().search_experiments()
    return {}


def worker_log(workdir: str, tool: str, uri: str, points: int) -> dict:
    mlflow = tracking_module(tool)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as run:
        # The parent starts every worker's loop at once, after all of them have imported the
        # tool and started their run.
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            raise BenchError("the parent did not say go")
        cpu_start = time.thread_time_ns()
        start = time.perf_counter_ns()
        for i in range(points):
            mlflow.log_metric("loss", float(i), step=i)
        wall_ns = time.perf_counter_ns() - start
        cpu_ns = time.thread_time_ns() - cpu_start
    return {"run_id": run.info.run_id, "call_ns": wall_ns / points, "cpu_ns": cpu_ns / points}


def tune_trainable(config: dict) -> None:
    import ray.tune

    if config["tool"] == "fastflow":
        from fastflow.ray import setup_mlflow
    else:
        from ray.air.integrations.mlflow import setup_mlflow

    mlflow = setup_mlflow(
        config,
        tracking_uri=config["uri"],
        experiment_name=TUNE_EXPERIMENT,
        create_experiment_if_not_exists=True,
    )
    keys = [f"metric_{k}" for k in range(config["points"])]
    last = config["iterations"] - 1
    for step in range(config["iterations"]):
        value = config["lr"] / (step + 1)
        start = time.perf_counter_ns()
        for key in keys:
            mlflow.log_metric(key, value, step=step)
        call_ns = (time.perf_counter_ns() - start) / len(keys)
        if step == last:
            # Tune may stop this actor as soon as the trial has reported for the last time;
            # what the trial logged must be in the store by then. (A no-op for MLflow, whose
            # log_metric is synchronous.)
            mlflow.flush_async_logging()
        ray.tune.report({"call_ns": call_ns})


def worker_tune(workdir: str, tool: str, trials: int, iterations: int, points: int) -> dict:
    tracking = tracking_module(tool)
    path = os.path.join(workdir, f"{tool}.db")
    uri = sqlite_uri(path)
    # Trials run two at a time; creating the store and experiment up front keeps them from
    # racing on it, so the sweep measures logging.
    tracking.MlflowClient(uri).create_experiment(TUNE_EXPERIMENT)

    import ray
    from ray import tune

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune_trainable,
            param_space={
                "tool": tool,
                "uri": uri,
                "iterations": iterations,
                "points": points,
                "lr": tune.grid_search([0.1 / (t + 1) for t in range(trials)]),
            },
            run_config=tune.RunConfig(
                name="sweep", storage_path=os.path.join(workdir, "ray_results"), verbose=0
            ),
        )
        start = time.perf_counter()
        grid = tuner.fit()
        tracking.flush_async_logging()
        wall_s = time.perf_counter() - start
        found = sum(points_per_run(path).values())
    finally:
        ray.shutdown()
    if grid.errors:
        raise BenchError(f"{len(grid.errors)} trials failed; the first: {grid.errors[0]}")
    if len(grid) != trials:
        raise BenchError(f"{len(grid)} of {trials} trials returned a result")
    call_ns = []
    for result in grid:
        call_ns.extend(float(v) for v in result.metrics_dataframe["call_ns"])
    return {"wall_s": wall_s, "call_ns": call_ns, "points": found}


def tracker_check(funnel: bool) -> str:
    """Which tracker this Ray worker logs through; raises if it is not the one measured."""
    import fastflow as mlflow

    tracker = repr(mlflow.MlflowClient()._tracker)
    if tracker.startswith("FunnelTracker") != funnel:
        path = "the funnel actor" if funnel else "direct store access"
        raise BenchError(f"a Ray task meant to log through {path} got {tracker}")
    return tracker


def warm_up_task(funnel: bool, hold_s: float) -> None:
    import fastflow as mlflow

    # An empty run waits for the funnel actor's process to start and answer; holding the
    # worker makes its siblings start in other processes.
    with mlflow.start_run(nested=True):
        tracker_check(funnel)
    time.sleep(hold_s)


def logging_task(funnel: bool, points: int) -> dict:
    import fastflow as mlflow

    with mlflow.start_run(nested=True) as run:
        tracker = tracker_check(funnel)
        cpu_start = time.thread_time_ns()
        start = time.perf_counter_ns()
        for i in range(points):
            mlflow.log_metric("loss", float(i), step=i)
        wall_ns = time.perf_counter_ns() - start
        cpu_ns = time.thread_time_ns() - cpu_start
    return {
        "run_id": run.info.run_id,
        "tracker": tracker,
        "call_ns": wall_ns / points,
        "cpu_ns": cpu_ns / points,
    }


def worker_ray_tasks(workdir: str, mode: str, tasks: int, points: int) -> dict:
    # The driver decides whether its workers get a funnel when its run starts; Ray's workers
    # inherit the environment ray.init sees.
    os.environ[FUNNEL_ENV] = mode
    funnel = mode == "always"
    path = os.path.join(workdir, f"ray-{mode}.db")
    uri = sqlite_uri(path)

    import fastflow as mlflow
    import ray

    cpus = 2
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        warm_up = ray.remote(warm_up_task)
        task = ray.remote(logging_task)
        mlflow.set_tracking_uri(uri)
        with mlflow.start_run():
            # Worker processes, their imports and the funnel actor start outside the clock.
            ray.get([warm_up.remote(funnel, 0.5) for _ in range(cpus)])
            start = time.perf_counter()
            results = ray.get([task.remote(funnel, points) for _ in range(tasks)])
            wall_s = time.perf_counter() - start
            # Counted before anything else ends: a task's end_run is the durability promise.
            found = points_per_run(path)
    finally:
        ray.shutdown()
    return {
        "wall_s": wall_s,
        "call_ns": [r["call_ns"] for r in results],
        "cpu_ns": [r["cpu_ns"] for r in results],
        "found": {r["run_id"]: found.get(r["run_id"], 0) for r in results},
        "points": sum(found.values()),
    }


WORKERS: dict[str, Callable[..., dict]] = {
    "store": worker_store,
    "log": worker_log,
    "tune": worker_tune,
    "ray_tasks": worker_ray_tasks,
}


# ---- the parent: runs workers, collects medians, prints the table ---------------------------


def run_child(cmd: list, cwd: str) -> dict:
    # In a group of its own, so that a timeout also ends the Ray processes the child started.
    return run_json(cmd, cwd, WORKER_TIMEOUT_S, env=child_env(CHILD_ENV_DROPS), own_group=True)


@dataclass
class Spread:
    call_ns: list = field(default_factory=list)
    cpu_ns: list = field(default_factory=list)
    wall_s: list = field(default_factory=list)
    total_points: int = 0

    @property
    def rates(self) -> list:
        return [self.total_points / s for s in self.wall_s]


def read_line(proc: subprocess.Popen, errfile: str, expect: Callable[[str], bool]) -> str:
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            with open(errfile, errors="replace") as f:
                stderr = f.read()
            raise BenchError(f"a worker exited with status {proc.returncode}\n{tail(stderr)}")
        if expect(line):
            return line


def process_trial(root: str, tool: str, processes: int, points: int, out: Spread) -> None:
    """One trial: a fresh store, ``processes`` workers that log ``points`` each at once."""
    workdir = tempfile.mkdtemp(prefix=f"{tool}-{processes}p-", dir=root)
    path = os.path.join(workdir, f"{tool}.db")
    uri = sqlite_uri(path)
    run_child(worker_cmd(__file__, "store", workdir, tool=tool, uri=uri), cwd=workdir)
    cmd = worker_cmd(__file__, "log", workdir, tool=tool, uri=uri, points=points)
    procs, errfiles = [], []
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        for proc in procs:
            kill_group(proc)

    watchdog = threading.Timer(WORKER_TIMEOUT_S, on_timeout)
    watchdog.start()
    try:
        for k in range(processes):
            errfile = os.path.join(workdir, f"worker-{k}.stderr")
            with open(errfile, "w") as err:
                procs.append(
                    subprocess.Popen(
                        cmd,
                        cwd=workdir,
                        env=child_env(CHILD_ENV_DROPS),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                        start_new_session=True,
                    )
                )
            errfiles.append(errfile)
        for proc, errfile in zip(procs, errfiles):
            read_line(proc, errfile, lambda line: line.strip() == "ready")
        start = time.perf_counter()
        for proc in procs:
            try:
                proc.stdin.write("go\n")
                proc.stdin.close()
            except BrokenPipeError:
                # That worker has died; reading its output below reports how.
                pass
        results = [
            json.loads(read_line(proc, errfile, lambda line: line.startswith("{")))
            for proc, errfile in zip(procs, errfiles)
        ]
        wall_s = time.perf_counter() - start
        # Counted before the workers exit: end_run's return is the durability promise.
        found = points_per_run(path)
        for proc in procs:
            proc.wait()
    except BenchError as e:
        if timed_out.is_set():
            raise BenchError(f"timed out after {WORKER_TIMEOUT_S} s\n{e}") from None
        raise
    finally:
        watchdog.cancel()
        for proc in procs:
            if proc.poll() is None:
                kill_group(proc)
                proc.wait()
            proc.stdout.close()
    missing = {
        r["run_id"]: found.get(r["run_id"], 0) for r in results if found.get(r["run_id"]) != points
    }
    if missing or sum(found.values()) != processes * points:
        raise BenchError(
            f"{sum(found.values()):,} of {processes * points:,} metric points were in the store "
            f"once every worker's run had ended; runs short of {points:,}: {missing}"
        )
    out.call_ns.extend(r["call_ns"] for r in results)
    out.cpu_ns.extend(r["cpu_ns"] for r in results)
    out.wall_s.append(wall_s)
    out.total_points = processes * points
    shutil.rmtree(workdir, ignore_errors=True)


def tune_sweep(root: str, tool: str, plan: Plan, out: Spread) -> None:
    workdir = tempfile.mkdtemp(prefix=f"{tool}-tune-", dir=root)
    cmd = worker_cmd(
        __file__,
        "tune",
        workdir,
        tool=tool,
        trials=plan.tune_trials,
        iterations=plan.tune_iterations,
        points=plan.tune_points,
    )
    result = run_child(cmd, cwd=workdir)
    if result["points"] != plan.tune_total:
        raise BenchError(
            f"{result['points']:,} of {plan.tune_total:,} metric points were in the store "
            "after Tuner.fit() and flush"
        )
    out.call_ns.extend(result["call_ns"])
    out.wall_s.append(result["wall_s"])
    out.total_points = plan.tune_total
    shutil.rmtree(workdir, ignore_errors=True)


def ray_tasks_trial(root: str, mode: str, plan: Plan, out: Spread) -> None:
    workdir = tempfile.mkdtemp(prefix=f"ray-tasks-{mode}-", dir=root)
    cmd = worker_cmd(
        __file__, "ray_tasks", workdir, mode=mode, tasks=plan.ray_tasks, points=plan.ray_points
    )
    result = run_child(cmd, cwd=workdir)
    short = {run: n for run, n in result["found"].items() if n != plan.ray_points}
    if short or len(result["found"]) != plan.ray_tasks or result["points"] != plan.ray_total:
        raise BenchError(
            f"{result['points']:,} of {plan.ray_total:,} metric points were in the store once "
            f"ray.get had every task ({FUNNEL_ENV}={mode}); runs short of "
            f"{plan.ray_points:,}: {short}"
        )
    out.call_ns.extend(result["call_ns"])
    out.cpu_ns.extend(result["cpu_ns"])
    out.wall_s.append(result["wall_s"])
    out.total_points = plan.ray_total
    shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Results:
    one: dict = field(default_factory=dict)
    many: dict = field(default_factory=dict)
    tune: dict = field(default_factory=dict)
    # By FASTFLOW_RAY_FUNNEL mode.
    ray_tasks: dict = field(default_factory=dict)


def measure(plan: Plan, root: str, errors: dict) -> Results:
    res = Results()
    attempt = attempter(errors)

    for tool in TOOLS:
        points, trials = plan.points(tool), plan.trials(tool)
        one, many = Spread(), Spread()

        def processes(one=one, many=many, tool=tool, points=points, trials=trials) -> None:
            # Alternating the two cases spreads the machine's noise over both.
            for _ in range(trials):
                process_trial(root, tool, 1, points, one)
                process_trial(root, tool, plan.processes, points, many)
            res.one[tool], res.many[tool] = one, many

        label = f"{tool}: 1 and {plan.processes} processes x {points:,} points, {trials} x"
        attempt(label, processes)

    for tool in TOOLS:
        sweep = Spread()

        def sweeps(sweep=sweep, tool=tool) -> None:
            for _ in range(plan.tune_sweeps):
                tune_sweep(root, tool, plan, sweep)
            res.tune[tool] = sweep

        attempt(f"{tool}: Tune sweep, {plan.tune_sweeps} x", sweeps)

    by_mode = {mode: Spread() for mode in FUNNEL_MODES}

    def ray_tasks() -> None:
        for _ in range(plan.ray_trials):
            for mode in FUNNEL_MODES:
                ray_tasks_trial(root, mode, plan, by_mode[mode])
        res.ray_tasks.update(by_mode)

    label = (
        f"fastflow: {plan.ray_tasks} Ray tasks x {plan.ray_points:,} points, funnel and direct, "
        f"{plan.ray_trials} x"
    )
    attempt(label, ray_tasks)
    return res


def build_rows(plan: Plan, res: Results) -> tuple:
    """Rows of (measurement, fastflow, MLflow, ratio, target, result), and the targets as
    (name, verdict). Every ratio is MLflow's time / fastflow's time or fastflow's rate /
    MLflow's rate, so above 1 means fastflow is faster."""
    rows, targets = [], []
    n = plan.processes

    def call_row(label: str, cases: dict, target_name: str) -> None:
        ff = median(cases.get("fastflow").call_ns) if cases.get("fastflow") else None
        ml = median(cases.get("mlflow").call_ns) if cases.get("mlflow") else None
        result = verdict(ff < MAX_WORKER_CALL_NS) if ff is not None else ERR
        targets.append((target_name, result))
        ratio = quotient(ml, ff)
        rows.append(
            (
                label,
                cell(ff, fmt_time_ns),
                cell(ml, fmt_time_ns),
                cell(ratio, fmt_ratio),
                f"< {fmt_time_ns(MAX_WORKER_CALL_NS)}",
                result,
            )
        )

    def rate_rows(label: str, cases: dict, processes: int) -> tuple:
        ff_case, ml_case = cases.get("fastflow"), cases.get("mlflow")
        ff = median(ff_case.rates) if ff_case else None
        ml = median(ml_case.rates) if ml_case else None
        rows.append(
            (label, cell(ff, fmt_rate), cell(ml, fmt_rate), cell(quotient(ff, ml), fmt_ratio))
            + (NONE, NONE)
        )
        ff_n, ml_n = processes * plan.ff_points, processes * plan.mlflow_points
        rows.append(
            (
                f"  wall time until durable ({ff_n:,} vs {ml_n:,} points)",
                cell(median(ff_case.wall_s) if ff_case else None, fmt_seconds),
                cell(median(ml_case.wall_s) if ml_case else None, fmt_seconds),
                NONE,
                NONE,
                NONE,
            )
        )
        return ff, ml

    call_row("1 process: log_metric per call, in the loop", res.one, "1-process per call")
    call_row(
        f"{n} processes: log_metric per call, in each worker's loop",
        res.many,
        f"{n}-process per call",
    )
    ff_one, ml_one = rate_rows("1 process: points/s until durable (counts differ*)", res.one, 1)
    ff_many, ml_many = rate_rows(
        f"{n} processes: aggregate points/s until durable (counts differ*)", res.many, n
    )
    ff_scale, ml_scale = quotient(ff_many, ff_one), quotient(ml_many, ml_one)
    scale_result = verdict(ff_scale >= MIN_SCALING) if ff_scale is not None else ERR
    targets.append((f"{n}-process / 1-process throughput", scale_result))
    rows.append(
        (
            f"  {n}-process aggregate / 1-process points/s",
            cell(ff_scale, fmt_ratio),
            cell(ml_scale, fmt_ratio),
            NONE,
            f">= {MIN_SCALING:.2f}x",
            scale_result,
        )
    )

    call_row(
        f"Tune sweep, {plan.tune_trials} trials: log_metric per call, in the trials",
        res.tune,
        "Tune per call",
    )
    ff_tune, ml_tune = res.tune.get("fastflow"), res.tune.get("mlflow")
    ff_wall = median(ff_tune.wall_s) if ff_tune else None
    ml_wall = median(ml_tune.wall_s) if ml_tune else None
    rows.append(
        (
            f"  sweep wall time, fit() until durable ({plan.tune_total:,} points per tool)",
            cell(ff_wall, fmt_seconds),
            cell(ml_wall, fmt_seconds),
            cell(quotient(ml_wall, ff_wall), fmt_ratio),
            NONE,
            NONE,
        )
    )

    funnel, direct = (res.ray_tasks.get(mode) for mode in FUNNEL_MODES)
    funnel_call = median(funnel.call_ns) if funnel else None
    direct_call = median(direct.call_ns) if direct else None
    result = verdict(funnel_call < MAX_WORKER_CALL_NS) if funnel_call is not None else ERR
    targets.append(("Ray tasks via funnel per call", result))
    rows.append(
        (
            "Ray tasks via funnel actor: log_metric per call (baseline: direct**)",
            cell(funnel_call, fmt_time_ns),
            cell(direct_call, fmt_time_ns),
            cell(quotient(direct_call, funnel_call), fmt_ratio),
            f"< {fmt_time_ns(MAX_WORKER_CALL_NS)}",
            result,
        )
    )
    funnel_rate = median(funnel.rates) if funnel else None
    direct_rate = median(direct.rates) if direct else None
    rows.append(
        (
            f"  {plan.ray_tasks} tasks via funnel: points/s until durable (baseline: direct**)",
            cell(funnel_rate, fmt_rate),
            cell(direct_rate, fmt_rate),
            cell(quotient(funnel_rate, direct_rate), fmt_ratio),
            NONE,
            NONE,
        )
    )
    funnel_wall = median(funnel.wall_s) if funnel else None
    direct_wall = median(direct.wall_s) if direct else None
    rows.append(
        (
            f"  wall time, tasks submitted until ray.get ({plan.ray_total:,} points per mode)",
            cell(funnel_wall, fmt_seconds),
            cell(direct_wall, fmt_seconds),
            NONE,
            NONE,
            NONE,
        )
    )
    return rows, targets


def footnotes(plan: Plan) -> list:
    """Notes, each a list of lines that starts with the asterisks marking its rows."""
    return [
        [
            f"* Each fastflow worker logs {plan.ff_points:,} points, each MLflow worker "
            f"{plan.mlflow_points:,} (its",
            "  synchronous log_metric takes milliseconds): these rows compare rates, not wall "
            "times.",
        ],
        [
            f"** fastflow alone, {FUNNEL_ENV}=always; the {mlflow_column()} column holds the "
            "baseline,",
            f"  Ray tasks that write the store themselves ({FUNNEL_ENV}=never). Ratio = "
            "baseline time /",
            "  funnel time, or funnel points/s / baseline points/s.",
        ],
    ]


def mlflow_column() -> str:
    return mlflow_name()


def header() -> tuple:
    return table_head(mlflow_column())


def details(plan: Plan, res: Results) -> list:
    lines = []
    for tool in TOOLS:
        name = "fastflow" if tool == "fastflow" else "MLflow"
        points, trials = plan.points(tool), plan.trials(tool)
        for processes, cases in ((1, res.one), (plan.processes, res.many)):
            got = cases.get(tool)
            if got is None:
                continue
            what = f"{name}, {processes} x {points:,} points, {plural(trials, 'trial')}"
            lines.append(f"{what}, per call (wall clock): {spread(got.call_ns, fmt_time_ns)}")
            lines.append(f"{what}, per call (CPU of the loop): {spread(got.cpu_ns, fmt_time_ns)}")
            lines.append(f"{what}, wall time until durable: {spread(got.wall_s, fmt_seconds)}")
    for tool in TOOLS:
        got = res.tune.get(tool)
        if got is None:
            continue
        name = "fastflow" if tool == "fastflow" else "MLflow"
        what = (
            f"{name} Tune sweep ({plan.tune_trials} trials x {plan.tune_iterations} reports x "
            f"{plan.tune_points} points), {plural(plan.tune_sweeps, 'sweep')}"
        )
        lines.append(
            f"{what}, per call over {len(got.call_ns)} batches: {spread(got.call_ns, fmt_time_ns)}"
        )
        lines.append(f"{what}, wall time: {spread(got.wall_s, fmt_seconds)}")
    for mode in FUNNEL_MODES:
        got = res.ray_tasks.get(mode)
        if got is None:
            continue
        what = (
            f"fastflow {plan.ray_tasks} Ray tasks x {plan.ray_points:,} points, "
            f"{FUNNEL_ENV}={mode}, {plural(plan.ray_trials, 'trial')}"
        )
        lines.append(f"{what}, per call (wall clock): {spread(got.call_ns, fmt_time_ns)}")
        lines.append(f"{what}, per call (CPU of the loop): {spread(got.cpu_ns, fmt_time_ns)}")
        lines.append(f"{what}, wall time until durable: {spread(got.wall_s, fmt_seconds)}")
    return lines


def present(plan: Plan, mode: str, res: Results, errors: dict) -> int:
    rows, targets = build_rows(plan, res)
    return report(
        header_line(mlflow_column(), [f"Ray {version_of('ray')}"], mode),
        header(),
        rows,
        notes=footnotes(plan),
        spaced_notes=True,
        legend=[
            "Ratio = MLflow time / fastflow time, or fastflow points/s / MLflow points/s; above 1",
            "means fastflow (or the funnel) is faster. All figures are medians over repeated "
            "trials:",
        ],
        details=details(plan, res),
        targets=targets,
        errors=errors,
    )


def main(argv: Optional[list] = None) -> int:
    return bench_main(__doc__, argv, WORKERS, "bench_ray", (FULL, QUICK), measure, present)


if __name__ == "__main__":
    sys.exit(main())
