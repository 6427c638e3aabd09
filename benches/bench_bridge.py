"""MLflow bridge benchmark: MLflow's own entry points alone and through fastflow's bridge.

    python benches/bench_bridge.py            # full run, a few minutes
    python benches/bench_bridge.py --quick    # smaller counts, for a smoke run
    FASTFLOW_BENCH_QUICK=1 python benches/bench_bridge.py   # the same

Libraries call MLflow themselves (Hugging Face's ``MLflowCallback``, Ray's ``setup_mlflow`` and
Tune callback, Lightning's logger through ``MlflowClient``). With fastflow imported, the bridge
makes those calls reach fastflow's writer. Each row runs the same MLflow-calling code twice, in
two fresh child processes with their own SQLite store in a temporary directory:

- MLflow alone: the child imports ``mlflow`` and nothing of fastflow;
- through the bridge: the child runs ``import fastflow`` first, then the same code.

and times it per call: ``mlflow.log_metric``; ``client.log_batch`` of one ``Metric`` (the
``MlflowClient`` created once); Hugging Face's ``MLflowCallback.on_log`` with 3 metrics (the
real callback if transformers is installed, otherwise what it does: keep the numeric logs, then
``mlflow.log_metrics(metrics, step=global_step, synchronous=False)``); Ray's ``setup_mlflow``
outside Tune, then ``mlflow.log_metrics`` of 2 metrics per call; Ray's ``MLflowLoggerCallback``
per Tune result (it calls ``get_run``, then ``log_metric`` for each of 2 metrics). The last row
is fastflow's own ``log_metric`` with the bridge installed (``import mlflow`` too) against
fastflow alone: the bridge must not slow it.

Every figure is the median of several timed batches; between batches the points logged are
written out (untimed), and at the end the ``metrics`` table must hold every point logged. The
machine this runs on may be shared and noisy. The exit status is nonzero if a measurement
failed, points were missing from a store or a target was not met.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
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
    child_env,
    fmt_ratio,
    fmt_time_ns,
    header_line,
    mlflow_name,
    report,
    run_json,
    spread,
    sqlite_uri,
    verdict,
    version_of,
    worker_cmd,
)

# Library entry points through the bridge: at most this per call, and this much faster.
MAX_ENTRY_NS = 10_000
MIN_ENTRY_RATIO = 100.0
# Ray's Tune callback reads the run back before every result.
MIN_TUNE_RATIO = 20.0
# fastflow's own log_metric with the bridge installed, against fastflow alone (time ratio).
MIN_OWN_RATIO = 0.80

QUICK_ENV = "FASTFLOW_BENCH_QUICK"
WORKER_TIMEOUT_S = 900

HF_LOGS = {"loss": 0.5, "grad_norm": 1.25, "learning_rate": 1e-4}
RAY_METRICS = {"loss": 0.5, "acc": 0.9}


@dataclass(frozen=True)
class Sizes:
    """Timed batches x calls per batch, after ``warmup`` untimed calls."""

    trials: int
    calls: int
    warmup: int


@dataclass(frozen=True)
class Plan:
    mlflow: Sizes
    bridge: Sizes
    # Ray's helpers cost tens of milliseconds a call in MLflow alone.
    mlflow_ray: Sizes
    tune_bridge: Sizes
    own: Sizes


FULL = Plan(
    mlflow=Sizes(trials=5, calls=40, warmup=3),
    bridge=Sizes(trials=10, calls=2_000, warmup=500),
    mlflow_ray=Sizes(trials=5, calls=10, warmup=2),
    tune_bridge=Sizes(trials=5, calls=40, warmup=3),
    own=Sizes(trials=20, calls=10_000, warmup=1_000),
)
QUICK = Plan(
    mlflow=Sizes(trials=3, calls=10, warmup=2),
    bridge=Sizes(trials=3, calls=500, warmup=100),
    mlflow_ray=Sizes(trials=3, calls=4, warmup=1),
    tune_bridge=Sizes(trials=3, calls=10, warmup=2),
    own=Sizes(trials=5, calls=10_000, warmup=1_000),
)


# ---- the cases: MLflow-calling code, the same in both children -----------------------------


@dataclass
class Case:
    """One entry point: ``call(i)`` is what is timed; ``settle()`` writes out what was logged
    (untimed, between batches); ``points`` is how many metric rows one call adds."""

    call: Callable[[int], None]
    points: int
    finish: Callable[[], None] = lambda: None
    note: str = ""


def settle() -> None:
    import mlflow

    mlflow.flush_async_logging()
    if "fastflow" in sys.modules:
        sys.modules["fastflow"].flush()


def case_log_metric(uri: str) -> Case:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.start_run()

    def call(i: int) -> None:
        mlflow.log_metric("loss", 0.5, step=i)

    return Case(call, 1, finish=mlflow.end_run)


def case_client_log_batch(uri: str) -> Case:
    import mlflow
    from mlflow.entities import Metric

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    run_id = client.create_run("0").info.run_id

    def call(i: int) -> None:
        # As Lightning's MLFlowLogger: a Metric with the current time, one log_batch.
        metric = Metric("loss", 0.5, int(time.time() * 1000), i)
        client.log_batch(run_id, metrics=[metric])

    return Case(call, 1, finish=lambda: client.set_terminated(run_id))


class _HfArgs:
    """What MLflowCallback.setup reads from TrainingArguments."""

    run_name = None
    output_dir = "."

    def to_dict(self) -> dict:
        return {"learning_rate": 1e-4, "num_train_epochs": 3, "seed": 42}


class _HfState:
    is_world_process_zero = True
    global_step = 0


def case_hf_on_log(uri: str) -> Case:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.start_run()
    state, args = _HfState(), _HfArgs()
    if importlib.util.find_spec("transformers") is not None:
        from transformers.integrations import MLflowCallback

        callback = MLflowCallback()
        # Inside an active run the callback logs into it, as in a Trainer under start_run.
        callback.setup(args, state, None)

        def call(i: int) -> None:
            state.global_step = i
            callback.on_log(args, state, None, logs=dict(HF_LOGS))

        note = f"transformers {version_of('transformers')} MLflowCallback.on_log"
    else:

        def call(i: int) -> None:
            # What on_log does: keep the numeric logs, replace characters MLflow refuses in
            # their names, then one asynchronous log_metrics.
            metrics = {}
            for k, v in HF_LOGS.items():
                if isinstance(v, (int, float)):
                    metrics[k] = v
            metrics = {re.sub(r"[^0-9A-Za-z_\-\.\ :/]", "_", k): v for k, v in metrics.items()}
            mlflow.log_metrics(metrics=metrics, step=i, synchronous=False)

        note = (
            "transformers not installed: emulated as on_log does it, the numeric logs with "
            "their names sanitized, then mlflow.log_metrics(metrics, step=global_step, "
            "synchronous=False)"
        )
    return Case(call, len(HF_LOGS), finish=mlflow.end_run, note=note)


def case_ray_setup_mlflow(uri: str) -> Case:
    from ray.air.integrations.mlflow import setup_mlflow

    # Outside Tune: no trial context; setup_mlflow starts a run and returns the mlflow module.
    mlflow = setup_mlflow(
        {"lr": 0.1, "layers": 3},
        tracking_uri=uri,
        experiment_name="bench-setup-mlflow",
        create_experiment_if_not_exists=True,
    )

    def call(i: int) -> None:
        mlflow.log_metrics(dict(RAY_METRICS), step=i)

    return Case(call, len(RAY_METRICS), finish=mlflow.end_run)


class _Trial:
    """What MLflowLoggerCallback reads from a Tune trial."""

    def __init__(self, trial_id: str, config: dict):
        self.trial_id = trial_id
        self.config = config
        self.local_path = None

    def __str__(self) -> str:
        return f"trainable_{self.trial_id}"


def case_tune_callback(uri: str) -> Case:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    callback = MLflowLoggerCallback(tracking_uri=uri, experiment_name="bench-tune-callback")
    callback.setup()
    trial = _Trial("00000", {"lr": 0.1, "layers": 3})
    callback.log_trial_start(trial)

    def call(i: int) -> None:
        # Tune's result: every numeric value is logged (here loss and training_iteration).
        callback.log_trial_result(i + 1, trial, {"loss": 0.5, "training_iteration": i + 1})

    return Case(call, 2, finish=lambda: callback.log_trial_end(trial))


CASES: dict[str, Callable[[str], Case]] = {
    "log_metric": case_log_metric,
    "client_log_batch": case_client_log_batch,
    "hf_on_log": case_hf_on_log,
    "ray_setup_mlflow": case_ray_setup_mlflow,
    "tune_callback": case_tune_callback,
}


def metric_rows(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    finally:
        conn.close()


# ---- workers: each runs alone in a child process and returns a JSON-able dict ---------------


def worker_case(
    workdir: str, case: str, bridge: bool, trials: int, calls: int, warmup: int
) -> dict:
    if bridge:
        import fastflow  # noqa: F401  (first, as a user of the one-line swap does)
    path = os.path.join(workdir, "store.db")
    got = CASES[case](sqlite_uri(path))
    import mlflow

    if bridge and not sys.modules["fastflow"]._bridge.installed():
        raise BenchError("the bridge was not installed")
    if not bridge and "fastflow" in sys.modules:
        raise BenchError("MLflow alone imported fastflow")
    call = got.call
    step = 0
    for _ in range(warmup):
        call(step)
        step += 1
    settle()
    per_call_ns = []
    for _ in range(trials):
        start = time.perf_counter_ns()
        for i in range(step, step + calls):
            call(i)
        per_call_ns.append((time.perf_counter_ns() - start) / calls)
        step += calls
        settle()
    got.finish()
    settle()
    return {
        "per_call_ns": per_call_ns,
        "rows": metric_rows(path),
        "expected": step * got.points,
        "note": got.note,
        "version": mlflow.__version__,
    }


def worker_own(workdir: str, bridge: bool, trials: int, calls: int, warmup: int) -> dict:
    import fastflow

    if bridge:
        import mlflow  # noqa: F401

        if not fastflow._bridge.installed():
            raise BenchError("the bridge was not installed")
    elif "mlflow" in sys.modules:
        raise BenchError("fastflow alone imported MLflow")
    path = os.path.join(workdir, "store.db")
    fastflow.set_tracking_uri(sqlite_uri(path))
    per_call_ns = []
    with fastflow.start_run():
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
            # Each batch starts with an empty queue, as in bench_core.
            fastflow.flush()
    return {"per_call_ns": per_call_ns, "rows": metric_rows(path), "expected": step}


WORKERS: dict[str, Callable[..., dict]] = {"case": worker_case, "own": worker_own}


# ---- the parent: runs workers, collects medians, prints the table ---------------------------


def run_worker(root: str, name: str, **params) -> dict:
    # The bridge as users have it: a caller's FASTFLOW_MLFLOW_BRIDGE=0 would turn it off.
    workdir = tempfile.mkdtemp(prefix=name + "-", dir=root)
    env = child_env(("MLFLOW_", "FASTFLOW_MLFLOW_BRIDGE"))
    try:
        return run_json(
            worker_cmd(__file__, name, workdir, **params), workdir, WORKER_TIMEOUT_S, env
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Results:
    # case -> {"mlflow": [ns], "bridge": [ns]}
    calls: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    own: dict = field(default_factory=dict)  # {"alone": [ns], "bridge": [ns]}
    mlflow_version: Optional[str] = None


ROWS = (
    ("log_metric", "mlflow.log_metric(key, value, step=i)"),
    ("client_log_batch", "MlflowClient.log_batch(run_id, [1 Metric])"),
    ("hf_on_log", "Hugging Face MLflowCallback.on_log, 3 metrics*"),
    ("ray_setup_mlflow", "Ray setup_mlflow, then mlflow.log_metrics, 2 metrics"),
    ("tune_callback", "Ray MLflowLoggerCallback, per Tune result**"),
)


def sizes_for(plan: Plan, case: str, bridge: bool) -> Sizes:
    if case == "tune_callback":
        return plan.tune_bridge if bridge else plan.mlflow_ray
    if case == "ray_setup_mlflow" and not bridge:
        return plan.mlflow_ray
    return plan.bridge if bridge else plan.mlflow


def checked(out: dict, label: str) -> list:
    if out["rows"] != out["expected"]:
        raise BenchError(
            f"{out['rows']:,} of {out['expected']:,} metric points were in the store ({label})"
        )
    return out["per_call_ns"]


def measure(plan: Plan, root: str, errors: dict) -> Results:
    res = Results()
    attempt = attempter(errors, catch=(BenchError, ValueError, KeyError))
    for case, label in ROWS:
        res.calls[case] = {}
        for tool, bridge in (("mlflow", False), ("bridge", True)):
            size = sizes_for(plan, case, bridge)

            def step(case=case, tool=tool, bridge=bridge, size=size) -> None:
                out = run_worker(
                    root,
                    "case",
                    case=case,
                    bridge=bridge,
                    trials=size.trials,
                    calls=size.calls,
                    warmup=size.warmup,
                )
                res.calls[case][tool] = checked(out, f"{case}, {tool}")
                if out["note"]:
                    res.notes[case] = out["note"]
                if not bridge:
                    res.mlflow_version = out["version"]

            who = "MLflow alone" if tool == "mlflow" else "through the bridge"
            attempt(f"{label.rstrip('*')}, {who}", step)
    for tool, bridge in (("alone", False), ("bridge", True)):

        def own(tool=tool, bridge=bridge) -> None:
            size = plan.own
            out = run_worker(
                root,
                "own",
                bridge=bridge,
                trials=size.trials,
                calls=size.calls,
                warmup=size.warmup,
            )
            res.own[tool] = checked(out, f"fastflow.log_metric, {tool}")

        who = "fastflow alone" if tool == "alone" else "bridge installed"
        attempt(f"fastflow.log_metric, {who}", own)
    return res


def build_rows(res: Results) -> tuple:
    """Rows of (measurement, bridge, MLflow, ratio, target, result) and the targets; every
    ratio is MLflow's time / the bridged time, so above 1 means the bridge is faster."""
    rows, targets = [], []
    for case, label in ROWS:
        got = res.calls.get(case, {})
        bridged = statistics.median(got["bridge"]) if got.get("bridge") else None
        alone = statistics.median(got["mlflow"]) if got.get("mlflow") else None
        ratio = alone / bridged if alone is not None and bridged else None
        if case == "tune_callback":
            target = f">= {MIN_TUNE_RATIO:.0f}x"
            ok = ratio is not None and ratio >= MIN_TUNE_RATIO
        else:
            target = f"<= {fmt_time_ns(MAX_ENTRY_NS)}, >= {MIN_ENTRY_RATIO:.0f}x"
            ok = (
                ratio is not None
                and bridged is not None
                and bridged <= MAX_ENTRY_NS
                and ratio >= MIN_ENTRY_RATIO
            )
        result = verdict(ok) if ratio is not None else ERR
        rows.append(
            (
                label,
                fmt_time_ns(bridged) if bridged is not None else ERR,
                fmt_time_ns(alone) if alone is not None else ERR,
                fmt_ratio(ratio) if ratio is not None else ERR,
                target,
                result,
            )
        )
        targets.append((label.rstrip("*"), result))
    bridged = statistics.median(res.own["bridge"]) if res.own.get("bridge") else None
    alone = statistics.median(res.own["alone"]) if res.own.get("alone") else None
    ratio = alone / bridged if alone is not None and bridged else None
    result = verdict(ratio >= MIN_OWN_RATIO) if ratio is not None else ERR
    label = "fastflow.log_metric, bridge installed***"
    rows.append(
        (
            label,
            fmt_time_ns(bridged) if bridged is not None else ERR,
            fmt_time_ns(alone) if alone is not None else ERR,
            fmt_ratio(ratio) if ratio is not None else ERR,
            f"~1x (>= {MIN_OWN_RATIO:.2f}x)",
            result,
        )
    )
    targets.append((label.rstrip("*"), result))
    return rows, targets


def footnotes(res: Results) -> tuple:
    hf = res.notes.get("hf_on_log", "not measured")
    return (
        [f"* {hf}."],
        [
            "** MLflowLoggerCallback.log_trial_result: get_run of the trial's run, a new "
            "MlflowClient, then log_metric of loss and training_iteration."
        ],
        [
            "*** fastflow's own log_metric with `import mlflow` (the bridge installed); the "
            "MLflow column is fastflow alone in that row."
        ],
    )


def details(plan: Plan, res: Results, baseline: str) -> list:
    lines = []
    for case, label in ROWS:
        for tool, who in (("mlflow", baseline), ("bridge", "through the bridge")):
            values = res.calls.get(case, {}).get(tool)
            if values:
                size = sizes_for(plan, case, tool == "bridge")
                lines.append(
                    f"{label.rstrip('*')}, {who}, {size.trials} x {size.calls:,} calls: "
                    f"{spread(values, fmt_time_ns)}"
                )
    for tool, who in (("alone", "fastflow alone"), ("bridge", "bridge installed")):
        values = res.own.get(tool)
        if values:
            lines.append(
                f"fastflow.log_metric, {who}, {plan.own.trials} x {plan.own.calls:,} calls: "
                f"{spread(values, fmt_time_ns)}"
            )
    return lines


def present(plan: Plan, mode: str, res: Results, errors: dict) -> int:
    baseline = mlflow_name(res.mlflow_version)
    rows, targets = build_rows(res)
    extras = [f"Ray {version_of('ray')}", f"transformers {version_of('transformers')}"]
    return report(
        header_line(baseline, extras, mode),
        ("Measurement, per call", "through the bridge", baseline, "Ratio", "Target", "Result"),
        rows,
        notes=footnotes(res),
        spaced_notes=True,
        legend=[
            "Ratio = MLflow alone time / bridged time; above 1 means the bridge is faster.",
            "Each side ran the same MLflow-calling code in a fresh process with its own SQLite",
            "store; the bridged one imported fastflow first. Medians over repeated batches:",
        ],
        details=details(plan, res, baseline),
        targets=targets,
        errors=errors,
    )


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes"):
        if "--worker" not in argv and "--quick" not in argv:
            argv.append("--quick")
    return bench_main(__doc__, argv, WORKERS, "bench_bridge", (FULL, QUICK), measure, present)


if __name__ == "__main__":
    sys.exit(main())
