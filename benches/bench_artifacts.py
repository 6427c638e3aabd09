"""Artifact benchmark: fastflow against MLflow 3.17.2, a large file logged beside a training loop.

    python benches/bench_artifacts.py            # full run, about four minutes
    python benches/bench_artifacts.py --quick    # smaller counts, for a smoke run

A training loop keeps logging metrics while another thread logs a large artifact (a model
checkpoint, say). The loop must not notice: this measures what one ``log_metric`` call costs
in the loop thread while ``log_artifact`` copies a 100 MB file, against the same loop with no
copy running, and how long each ``log_artifact`` takes. Both tools run the same script; the
destinations are a local SQLite store (artifacts in a directory), one real ``mlflow server
--serve-artifacts`` on 127.0.0.1 (artifacts uploaded through its proxy), and an S3 server
(moto's) on 127.0.0.1 for an experiment whose artifact location is ``s3://``: there both
tools run MLflow's own S3 repository (boto3), so its row shows that fastflow calls it
without holding the GIL any longer than MLflow does.

The loop logs in timed batches (100 calls; 5 for MLflow), paced at about 20,000 calls a
second: a busy training loop, but one a store can keep up with, so the figure is the cost of
the call and not of a full queue. Every trial runs in a fresh child process; figures are
medians over the trials' batches. The target: the loop's median per-call cost while a copy
runs stays under 2 us. The exit status is nonzero if a measurement failed or a target was missed.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Optional

# The scripts' shared helpers live beside them; this finds them whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import (  # noqa: E402
    ERR,
    NONE,
    attempter,
    bench_main,
    cell,
    fmt_ratio,
    fmt_seconds,
    fmt_time_ns,
    header_line,
    median,
    mlflow_name,
    quotient,
    report,
    run_worker,
    spread,
    sqlite_uri,
    table_head,
    tracking_module,
    verdict,
)
from bench_remote import Server  # noqa: E402

# moto's S3 server: the artifact-store tests' own peer. Appended, so that nothing in tests/
# shadows an installed package.
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from remote_server import S3Server  # noqa: E402

MAX_CALL_DURING_COPY_NS = 2_000
# Calls per timed batch: MLflow's calls take milliseconds, so its batches are shorter.
BATCH = {"fastflow": 100, "mlflow": 5}
# Seconds between batches: with fastflow's calls this paces the loop near 20,000 calls/s.
PAUSE_S = 0.005
WORKER_TIMEOUT_S = 900


@dataclass(frozen=True)
class Plan:
    size_mb: int
    copies: int
    trials: int
    idle_s: float


FULL = Plan(size_mb=100, copies=4, trials=3, idle_s=1.0)
QUICK = Plan(size_mb=20, copies=2, trials=1, idle_s=0.5)


def write_payload(path: str, size_mb: int) -> None:
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size_mb):
            f.write(chunk)


def worker_beside_a_copy(workdir: str, tool: str, uri: Optional[str], plan: dict) -> dict:
    """The loop's per-call cost alone and while ``log_artifact`` copies, and each copy's time."""
    module = tracking_module(tool)
    module.set_tracking_uri(uri or sqlite_uri(os.path.join(workdir, "store.db")))
    payload = os.path.join(workdir, "checkpoint.bin")
    write_payload(payload, plan["size_mb"])
    step = 0
    batch = BATCH[tool]

    def loop(run_id: str, ready: threading.Event, stop: threading.Event, per_call_ns: list):
        nonlocal step
        # The loop's thread logs into the run the main thread started, as a training thread
        # would; resuming it here keeps that call out of the timed batches.
        module.start_run(run_id=run_id)
        ready.set()
        while not stop.is_set():
            start = time.perf_counter_ns()
            for _ in range(batch):
                module.log_metric("loss", 0.5, step=step)
                step += 1
            per_call_ns.append((time.perf_counter_ns() - start) / batch)
            time.sleep(PAUSE_S)

    def beside(run_id: str, work) -> list:
        ready, stop, per_call_ns = threading.Event(), threading.Event(), []
        thread = threading.Thread(target=loop, args=(run_id, ready, stop, per_call_ns))
        thread.start()
        try:
            ready.wait()
            work()
        finally:
            stop.set()
            thread.join()
        return per_call_ns

    copy_s, alone_s = [], []

    def copies(into: list, prefix: str) -> None:
        for k in range(plan["copies"]):
            start = time.perf_counter()
            module.log_artifact(payload, artifact_path=f"{prefix}/{k}")
            into.append(time.perf_counter() - start)

    s3 = plan.get("s3")
    if s3 is not None:
        os.environ.update(s3["env"])
        location = f"s3://{s3['bucket']}/{os.path.basename(workdir)}"
        module.set_experiment(experiment_id=module.create_experiment("s3", location))
    with module.start_run() as run:
        module.log_metric("warm-up", 0.0)
        # Loads what the first transfer needs (an S3 client; MLflow itself for fastflow)
        # before anything is timed.
        module.log_text("warm-up", "warm-up.txt")
        # First, while the run has no points: beside the loop, a server is also busy taking
        # in the loop's points (fastflow sends far more of them), so copies with nothing else
        # running are what shows the transfer itself.
        copies(alone_s, "alone")
        idle = beside(run.info.run_id, lambda: time.sleep(plan["idle_s"]))
        during = beside(run.info.run_id, lambda: copies(copy_s, "checkpoints"))
    listed = module.MlflowClient().list_artifacts(run.info.run_id, "checkpoints/0")
    if [f.file_size for f in listed] != [plan["size_mb"] << 20]:
        raise RuntimeError(f"the artifact was not logged whole: {listed}")
    return {
        "idle_ns": idle,
        "during_ns": during,
        "copy_s": copy_s,
        "alone_s": alone_s,
        "points_beside": len(during) * batch,
        "version": getattr(module, "__version__", None),
    }


WORKERS = {"beside-a-copy": worker_beside_a_copy}


@dataclass
class Figures:
    idle_ns: list = field(default_factory=list)
    during_ns: list = field(default_factory=list)
    copy_s: list = field(default_factory=list)
    alone_s: list = field(default_factory=list)
    points_beside: list = field(default_factory=list)


@dataclass
class Results:
    # (destination, tool) -> figures
    figures: dict = field(default_factory=dict)
    mlflow_version: Optional[str] = None


DESTINATIONS = ("local store", "mlflow server proxy", "S3 server")
BUCKET = "bench-artifacts"


TOOLS = ("fastflow", "mlflow")


def start(server: Server) -> None:
    server.start()
    server.settle()
    # The proxy's first transfers are slow (its artifact handlers load on first use).
    for _ in range(3):
        url = f"{server.uri}/api/2.0/mlflow-artifacts/artifacts/warm-up/payload.bin"
        request = urllib.request.Request(url, data=os.urandom(1 << 20), method="PUT")
        with urllib.request.urlopen(request, timeout=120) as answer:
            answer.read()
        with urllib.request.urlopen(url, timeout=120) as answer:
            answer.read()


def measure(plan: Plan, root: str, errors: dict) -> Results:
    res = Results()
    attempt = attempter(errors, catch=(Exception,))
    server = Server(root, serve_artifacts=True)
    # A fresh server answers its first requests slowly; settled, it serves both tools alike.
    attempt("start mlflow server --serve-artifacts", lambda: start(server))
    s3 = S3Server(root, BUCKET)
    attempt("start an S3 server", s3.start)
    try:
        for trial in range(plan.trials):
            for destination in DESTINATIONS:
                uri = server.uri if destination == "mlflow server proxy" else None
                where = (
                    {"s3": {"env": s3.env, "bucket": BUCKET}} if destination == "S3 server" else {}
                )
                # Alternating who goes first spreads a slow spell of the machine over both.
                for tool in TOOLS if trial % 2 == 0 else TOOLS[::-1]:
                    figures = res.figures.setdefault((destination, tool), Figures())

                    def one(tool=tool, uri=uri, figures=figures, where=where) -> None:
                        out = run_worker(
                            __file__,
                            root,
                            "beside-a-copy",
                            WORKER_TIMEOUT_S,
                            tool=tool,
                            uri=uri,
                            plan={
                                "size_mb": plan.size_mb,
                                "copies": plan.copies,
                                "idle_s": plan.idle_s,
                                **where,
                            },
                        )
                        figures.idle_ns += out["idle_ns"]
                        figures.during_ns += out["during_ns"]
                        figures.copy_s += out["copy_s"]
                        figures.alone_s += out["alone_s"]
                        figures.points_beside.append(out["points_beside"])
                        if tool == "mlflow":
                            res.mlflow_version = out["version"]

                    attempt(f"{tool}, {destination}, trial {trial + 1}", one)
    finally:
        server.stop()
        s3.stop()
    return res


def build_rows(plan: Plan, res: Results, baseline: str) -> tuple:
    """Rows of (measurement, fastflow, baseline, ratio, target, result), and the targets."""
    rows, targets = [], []
    for destination in DESTINATIONS:
        ours = res.figures.get((destination, "fastflow"), Figures())
        theirs = res.figures.get((destination, "mlflow"), Figures())
        idle = (median(ours.idle_ns), median(theirs.idle_ns))
        during = (median(ours.during_ns), median(theirs.during_ns))
        copy = (median(ours.copy_s), median(theirs.copy_s))
        copy_alone = (median(ours.alone_s), median(theirs.alone_s))
        ok = during[0] is not None and during[0] < MAX_CALL_DURING_COPY_NS
        result = verdict(ok) if during[0] is not None else ERR
        targets.append((f"log_metric beside a copy ({destination})", result))
        label = f"{destination}: log_metric per call, loop alone"
        rows.append((label, *_cells(idle, fmt_time_ns), NONE, NONE))
        rows.append(
            (
                f"  while log_artifact copies {plan.size_mb} MB",
                *_cells(during, fmt_time_ns),
                f"< {fmt_time_ns(MAX_CALL_DURING_COPY_NS)}",
                result,
            )
        )
        copied = f"  log_artifact of {plan.size_mb} MB, beside the loop"
        rows.append((copied, *_cells(copy, fmt_seconds), NONE, NONE))
        copied = f"  log_artifact of {plan.size_mb} MB, nothing else running"
        rows.append((copied, *_cells(copy_alone, fmt_seconds), NONE, NONE))
    return rows, targets


def _cells(pair: tuple, fmt) -> tuple:
    ours, theirs = pair
    return cell(ours, fmt), cell(theirs, fmt), cell(quotient(theirs, ours), fmt_ratio)


def details(plan: Plan, res: Results, baseline: str) -> list:
    lines = []
    for (destination, tool), figures in res.figures.items():
        name = "fastflow" if tool == "fastflow" else baseline
        for label, values, fmt in (
            ("per call, loop alone", figures.idle_ns, fmt_time_ns),
            ("per call, beside a copy", figures.during_ns, fmt_time_ns),
            (f"log_artifact of {plan.size_mb} MB beside the loop", figures.copy_s, fmt_seconds),
            (f"log_artifact of {plan.size_mb} MB alone", figures.alone_s, fmt_seconds),
        ):
            if values:
                lines.append(f"{name}, {destination}, {label}: {spread(values, fmt)}")
        if figures.points_beside:
            points = statistics.median(figures.points_beside)
            lines.append(f"{name}, {destination}, points logged beside the copies: {points:,.0f}")
    if res.figures:
        batches = statistics.median(len(f.during_ns) for f in res.figures.values())
        lines.append(f"median batches timed beside the copies, per tool and destination: {batches}")
    return lines


def present(plan: Plan, mode: str, res: Results, errors: dict) -> int:
    baseline = mlflow_name(res.mlflow_version)
    rows, targets = build_rows(plan, res, baseline)
    return report(
        header_line(baseline, [f"{plan.trials} trials x {plan.copies} copies"], mode),
        table_head(baseline),
        rows,
        legend=[
            "Ratio = baseline time / fastflow time; above 1 means fastflow is faster.",
            "All figures are medians over every timed batch or copy of every trial:",
        ],
        details=details(plan, res, baseline),
        targets=targets,
        errors=errors,
    )


def main(argv: Optional[list] = None) -> int:
    return bench_main(__doc__, argv, WORKERS, "bench_artifacts", (FULL, QUICK), measure, present)


if __name__ == "__main__":
    sys.exit(main())
