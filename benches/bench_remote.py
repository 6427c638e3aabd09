"""Remote tracking benchmark: fastflow against MLflow 3.17.2 logging to one mlflow server.

    python benches/bench_remote.py            # full run, about four minutes
    python benches/bench_remote.py --quick    # smaller counts, for a smoke run

Measures what logging costs when the tracking URI is an ``http://`` MLflow tracking server.
The parent starts one real ``mlflow server`` on 127.0.0.1 (SQLite backend store, one worker)
for the whole run; every trial logs into a new run of that server from a fresh child process:

- fastflow: ``log_metric("loss", float(i), step=i)`` in a loop inside ``with start_run()``,
  then ``flush()``. The loop alone is the per-call cost; the loop and the flush together are
  the time until the points are durable on the server.
- fastflow with the tracking URI ``databricks``: the same loop, the workspace named by
  ``DATABRICKS_HOST`` (the same server) and ``DATABRICKS_TOKEN``. Its per-call cost must
  equal the ``http://`` one: the workspace changes where the writer sends, not the call.
- MLflow ``log_metric``, synchronous: each call is an HTTP round trip that returns once the
  point is on the server, so the loop is both the per-call cost and the time until durable.
- MLflow ``log_metric(..., synchronous=False)``: the loop, then ``flush_async_logging()``.
- MLflow ``MlflowClient.log_batch`` of 1,000 ``Metric`` objects a call: each call is timed
  alone, and the loop of calls (building the metrics included) is the time until durable.

fastflow and ``log_batch`` log the same number of points. MLflow's ``log_metric`` costs
milliseconds a point, so it logs far fewer, and its time for the full count is scaled from
its measured time. After every trial, the child (as soon as its clock stops) and the parent
(once the child has exited) count the run's rows in the ``metrics`` table of the server's
SQLite file: each step must be there exactly once. The server's access log gives the number
of logging requests (``runs/log-batch``, ``runs/log-metric``) each trial sent. The machine
this runs on may be shared and noisy: every figure is a median over repeated trials. The exit
status is nonzero if a measurement failed, points were missing or duplicated on the server or
a target was not met.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
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
    table_head,
    tail,
    three_digits,
    verdict,
    worker_cmd,
)

MAX_CALL_NS = 2_000
MAX_DURABLE_FACTOR = 1.5

KEY = "loss"
BATCH = 1_000
# The MLflow paths, the one normally fastest first.
PATHS = ("batch", "async", "sync")
# The order of one round of trials: the two paths the durable target compares run back to
# back, so that a slow spell on the machine or a growing server database hits both.
ROUND = ("fastflow", "databricks", *PATHS)
# The http:// URI's per-call cost over the databricks one's: equal, within the noise.
WORKSPACE_CALL_RANGE = (0.9, 1.1)

SERVER_START_TIMEOUT_S = 120
SERVER_STOP_TIMEOUT_S = 30
SERVER_SETTLE_TIMEOUT_S = 120
# CPU seconds a second below which the server's processes count as idle.
SERVER_IDLE_CPU = 0.1
WORKER_TIMEOUT_S = 900

LOGGING_ENDPOINTS = ("/runs/log-batch", "/runs/log-metric")
ACCESS_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3})')


@dataclass(frozen=True)
class Plan:
    points: int
    ff_trials: int
    batch_trials: int
    async_calls: int
    async_trials: int
    sync_calls: int
    sync_trials: int

    def trials(self, tool: str) -> int:
        return {
            "fastflow": self.ff_trials,
            "databricks": self.ff_trials,
            "batch": self.batch_trials,
            "async": self.async_trials,
            "sync": self.sync_trials,
        }[tool]

    def logged(self, tool: str) -> int:
        """Points one trial of ``tool`` logs."""
        return {"async": self.async_calls, "sync": self.sync_calls}.get(tool, self.points)


FULL = Plan(
    points=100_000,
    ff_trials=5,
    batch_trials=5,
    async_calls=2_000,
    async_trials=3,
    sync_calls=200,
    sync_trials=3,
)
QUICK = Plan(
    points=20_000,
    ff_trials=2,
    batch_trials=2,
    async_calls=500,
    async_trials=1,
    sync_calls=50,
    sync_trials=1,
)


def count_points(db: str, run_id: str) -> dict:
    # Read-only, so that a wrong path fails instead of creating an empty database; the
    # timeout waits out the server's write transactions.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    try:
        query = (
            "SELECT COUNT(*), COUNT(DISTINCT step), MIN(step), MAX(step) FROM metrics "
            "WHERE run_uuid = ? AND key = ?"
        )
        rows, steps, low, high = conn.execute(query, (run_id, KEY)).fetchone()
    finally:
        conn.close()
    return {"rows": rows, "steps": steps, "low": low, "high": high}


def points_problem(found: dict, expected: int) -> Optional[str]:
    """What is wrong with a run's points on the server, or None if steps 0 .. expected - 1
    are each there exactly once."""
    if (
        found["rows"] == expected
        and found["steps"] == expected
        and found["low"] == 0
        and found["high"] == expected - 1
    ):
        return None
    return (
        f"{found['rows']:,} rows with {found['steps']:,} distinct steps "
        f"(min {found['low']}, max {found['high']}) where {expected:,} rows with steps 0 .. "
        f"{expected - 1:,} were expected"
    )


# ---- workers: each runs alone in a child process and returns a JSON-able dict ---------------


def worker_fastflow(
    workdir: str, uri: str, db: str, points: int, workspace_host: Optional[str] = None
) -> dict:
    if workspace_host is not None:
        os.environ["DATABRICKS_HOST"] = workspace_host
        os.environ["DATABRICKS_TOKEN"] = "dapi-bench-token"
    import fastflow as mlflow

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as run:
        cpu_start = time.thread_time_ns()
        start = time.perf_counter_ns()
        for i in range(points):
            mlflow.log_metric(KEY, float(i), step=i)
        loop_ns = time.perf_counter_ns() - start
        cpu_ns = time.thread_time_ns() - cpu_start
        mlflow.flush()
        durable_ns = time.perf_counter_ns() - start
        # Counted before the run ends: flush's return is the durability promise.
        found = count_points(db, run.info.run_id)
    return {
        "run_id": run.info.run_id,
        "call_ns": [loop_ns / points],
        "cpu_ns": cpu_ns / points,
        "durable_s": durable_ns / 1e9,
        "found": found,
    }


def worker_log_metric(workdir: str, uri: str, db: str, points: int, synchronous: bool) -> dict:
    import mlflow

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as run:
        start = time.perf_counter_ns()
        for i in range(points):
            mlflow.log_metric(KEY, float(i), step=i, synchronous=synchronous)
        loop_ns = time.perf_counter_ns() - start
        # A no-op after synchronous calls, which are durable when they return.
        mlflow.flush_async_logging()
        durable_ns = time.perf_counter_ns() - start
        found = count_points(db, run.info.run_id)
    return {
        "run_id": run.info.run_id,
        "call_ns": [loop_ns / points],
        "durable_s": durable_ns / 1e9,
        "found": found,
        "version": mlflow.__version__,
    }


def worker_log_batch(workdir: str, uri: str, db: str, points: int) -> dict:
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(tracking_uri=uri)
    run_id = client.create_run("0").info.run_id
    call_ns = []
    start = time.perf_counter_ns()
    for first in range(0, points, BATCH):
        timestamp = int(time.time() * 1000)
        last = min(points, first + BATCH)
        metrics = [Metric(KEY, float(i), timestamp, i) for i in range(first, last)]
        call_start = time.perf_counter_ns()
        client.log_batch(run_id, metrics=metrics)
        call_ns.append(time.perf_counter_ns() - call_start)
    durable_ns = time.perf_counter_ns() - start
    found = count_points(db, run_id)
    client.set_terminated(run_id)
    return {
        "run_id": run_id,
        "call_ns": call_ns,
        "durable_s": durable_ns / 1e9,
        "found": found,
        "version": mlflow.__version__,
    }


WORKERS: dict[str, Callable[..., dict]] = {
    "fastflow": worker_fastflow,
    "log_metric": worker_log_metric,
    "log_batch": worker_log_batch,
}


# ---- the server: one mlflow server for the whole run ----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Requests:
    """Requests in the server's access log: those that log metrics (``runs/log-batch`` and
    ``runs/log-metric``), those of them answered with an error, and all of them."""

    logging: int = 0
    refused: int = 0
    total: int = 0

    def __sub__(self, other: Requests) -> Requests:
        return Requests(
            self.logging - other.logging,
            self.refused - other.refused,
            self.total - other.total,
        )


class Server:
    def __init__(self, root: str, serve_artifacts: bool = False):
        self.directory = os.path.join(root, "server")
        os.makedirs(self.directory)
        # Proxied artifacts: runs get mlflow-artifacts: URIs, files go through the server.
        self.serve_artifacts = serve_artifacts
        self.db = os.path.join(self.directory, "server.db")
        self.log = os.path.join(self.directory, "server.log")
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            "sqlite:///" + self.db,
            *(
                ["--serve-artifacts", "--artifacts-destination"]
                if self.serve_artifacts
                else ["--default-artifact-root"]
            ),
            os.path.join(self.directory, "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        # The access log counts requests: unbuffered, each line is in the file by the time
        # the client has its answer.
        env = {**child_env(), "PYTHONUNBUFFERED": "1"}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                cmd,
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"mlflow server exited with status {self.process.returncode}\n"
                    f"{tail(self.read_log())}"
                )
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        raise BenchError(
            f"mlflow server did not answer /health within {SERVER_START_TIMEOUT_S} s\n"
            f"{tail(self.read_log())}"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        kill_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_group(self.process, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def cpu_seconds(self) -> Optional[float]:
        """CPU time used so far by the server's process group, or None without /proc."""
        tick = os.sysconf("SC_CLK_TCK")
        used = 0
        try:
            pids = [pid for pid in os.listdir("/proc") if pid.isdigit()]
        except OSError:
            return None
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            # The fields after the command name, which may hold spaces and parentheses.
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == self.process.pid:
                used += int(fields[11]) + int(fields[12])
        return used / tick

    def settle(self) -> Optional[float]:
        """Waits until the server's processes are idle and returns how long that took.
        /health answers while the server's job-runner processes are still starting, and
        they keep both cores busy for seconds."""
        start = time.monotonic()
        last = self.cpu_seconds()
        if last is None:
            return None
        while time.monotonic() - start < SERVER_SETTLE_TIMEOUT_S:
            time.sleep(1.0)
            now = self.cpu_seconds()
            if now - last < SERVER_IDLE_CPU:
                return time.monotonic() - start
            last = now
        raise BenchError(f"mlflow server was still busy after {SERVER_SETTLE_TIMEOUT_S} s")

    def post(self, endpoint: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"{self.uri}/api/2.0/mlflow/{endpoint}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read() or b"{}")

    def warm_up(self) -> int:
        """Logs one batch into a run of its own and returns the points logged. A fresh server
        answers its first requests slowly (lazy imports, the first queries); without this the
        first trial would pay for that."""
        now = int(time.time() * 1000)
        run = self.post("runs/create", {"experiment_id": "0", "start_time": now})
        run_id = run["run"]["info"]["run_id"]
        metrics = [
            {"key": KEY, "value": float(i), "timestamp": now, "step": i} for i in range(BATCH)
        ]
        self.post("runs/log-batch", {"run_id": run_id, "metrics": metrics})
        self.post("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": now})
        return BATCH

    def read_log(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()

    def requests(self) -> Requests:
        counted = Requests()
        for match in ACCESS_LINE.finditer(self.read_log()):
            _, path, status = match.groups()
            counted.total += 1
            if path.endswith(LOGGING_ENDPOINTS):
                counted.logging += 1
                if not status.startswith("2"):
                    counted.refused += 1
        return counted

    def total_rows(self) -> int:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=60)
        try:
            return conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        finally:
            conn.close()


# ---- the parent: runs workers, collects medians, prints the table ---------------------------


def worker_call(tool: str, plan: Plan, server: Server) -> tuple:
    points = plan.logged(tool)
    params = {"uri": server.uri, "db": server.db, "points": points}
    if tool == "fastflow":
        return "fastflow", params
    if tool == "databricks":
        return "fastflow", {**params, "uri": "databricks", "workspace_host": server.uri}
    if tool == "batch":
        return "log_batch", params
    return "log_metric", {**params, "synchronous": tool == "sync"}


@dataclass
class Spread:
    call_ns: list = field(default_factory=list)
    cpu_ns: list = field(default_factory=list)
    durable_s: list = field(default_factory=list)
    requests: list = field(default_factory=list)


def trial(root: str, tool: str, plan: Plan, server: Server, out: Spread) -> Optional[str]:
    """One trial of ``tool`` in a fresh child process; returns MLflow's version if it ran."""
    name, params = worker_call(tool, plan, server)
    workdir = tempfile.mkdtemp(prefix=f"{tool}-", dir=root)
    cmd = worker_cmd(__file__, name, workdir, **params)
    before = server.requests()
    try:
        # In a process group of its own, like the server, so that a timeout ends what it
        # started as well.
        result = run_json(cmd, workdir, WORKER_TIMEOUT_S, own_group=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sent = server.requests() - before
    expected = params["points"]
    problem = points_problem(result["found"], expected)
    if problem is not None:
        raise BenchError(
            f"run {result['run_id']} on the server when the clock stopped, "
            f"{result['durable_s']:.2f} s after the first call: {problem}; "
            f"{sent.logging:,} logging requests, {sent.refused:,} refused"
        )
    # Anything sent after the clock stopped (a resend as the run ended or the process
    # exited) shows up now.
    problem = points_problem(count_points(server.db, result["run_id"]), expected)
    if problem is not None:
        raise BenchError(
            f"run {result['run_id']} on the server once the child had exited: {problem}; "
            f"{sent.logging:,} logging requests, {sent.refused:,} refused"
        )
    out.call_ns.extend(result["call_ns"])
    if "cpu_ns" in result:
        out.cpu_ns.append(result["cpu_ns"])
    out.durable_s.append(result["durable_s"])
    out.requests.append(sent)
    return result.get("version")


@dataclass
class Results:
    mlflow_version: Optional[str] = None
    # By tool: "fastflow" or one of PATHS.
    tools: dict = field(default_factory=dict)
    server_rows: Optional[int] = None
    server_settle_s: Optional[float] = None
    expected_rows: int = 0


def measure(plan: Plan, root: str, errors: dict) -> Results:
    res = Results()
    # The parent itself reads the server's database and log, and talks to it over HTTP.
    attempt = attempter(errors, catch=(BenchError, ValueError, sqlite3.Error, OSError))

    server = Server(root)
    try:
        if not attempt("start mlflow server", server.start):
            return res

        def warm_up() -> None:
            res.server_settle_s = server.settle()
            res.expected_rows += server.warm_up()

        if not attempt("let the server settle, then warm it up", warm_up):
            return res
        failed = set()
        for k in range(max(plan.trials(tool) for tool in ROUND)):
            for tool in ROUND:
                trials = plan.trials(tool)
                if tool in failed or k >= trials:
                    continue
                out = res.tools.setdefault(tool, Spread())

                def one(tool=tool, out=out) -> None:
                    version = trial(root, tool, plan, server, out)
                    res.mlflow_version = version or res.mlflow_version
                    res.expected_rows += plan.logged(tool)

                label = f"{describe(tool)}, {plan.logged(tool):,} points, trial {k + 1} of {trials}"
                if not attempt(label, one):
                    failed.add(tool)
                    res.tools.pop(tool, None)

        def rows() -> None:
            found = server.total_rows()
            if found != res.expected_rows:
                raise BenchError(
                    f"{found:,} metric rows in the server's database, {res.expected_rows:,} "
                    "logged by the trials"
                )
            res.server_rows = found

        # A failed trial may have left points behind, so the total only adds up without one.
        if not failed:
            attempt("count the server's metrics rows", rows)
    finally:
        server.stop()
    return res


def describe(tool: str) -> str:
    return {
        "fastflow": "fastflow log_metric + flush",
        "databricks": "fastflow log_metric + flush, tracking URI databricks",
        "batch": f"MLflow log_batch of {BATCH:,}",
        "async": "MLflow log_metric(synchronous=False) + flush_async_logging",
        "sync": "MLflow log_metric, synchronous",
    }[tool]


def fmt_seconds(seconds: float) -> str:
    if seconds >= 600:
        return f"{three_digits(seconds / 60)} min"
    return fmt_time_ns(seconds * 1e9)


def fmt_count(n: float) -> str:
    return f"{n:,.0f}"


def durable_seconds(plan: Plan, tool: str, got: Optional[Spread]) -> Optional[list]:
    """Each trial's time until durable, scaled to ``plan.points`` for the paths that log
    fewer points."""
    if got is None:
        return None
    scale = plan.points / plan.logged(tool)
    return [s * scale for s in got.durable_s]


PATH_NAMES = {
    "batch": f"log_batch of {BATCH:,}",
    "async": "log_metric(synchronous=False)",
    "sync": "log_metric, synchronous",
}


def build_rows(plan: Plan, res: Results) -> tuple:
    """Rows of (measurement, fastflow, MLflow, ratio, target, result), and the targets as
    (name, verdict). Every ratio is MLflow's time / fastflow's time, so above 1 means fastflow
    is faster."""
    rows, targets = [], []
    ff = res.tools.get("fastflow")
    batch = res.tools.get("batch")
    n = plan.points

    ff_call = median(ff.call_ns) if ff else None
    result = verdict(ff_call < MAX_CALL_NS) if ff_call is not None else ERR
    targets.append(("fastflow per call", result))
    rows.append(
        (
            "log_metric(key, value, step=i), per call in the training loop",
            cell(ff_call, fmt_time_ns),
            NONE,
            NONE,
            f"< {fmt_time_ns(MAX_CALL_NS)}",
            result,
        )
    )
    workspace = res.tools.get("databricks")
    workspace_call = median(workspace.call_ns) if workspace else None
    # As every ratio here: the other column's time over this one's.
    workspace_ratio = quotient(ff_call, workspace_call)
    low, high = WORKSPACE_CALL_RANGE
    result = verdict(low <= workspace_ratio <= high) if workspace_ratio is not None else ERR
    targets.append(("databricks per call equals http://", result))
    rows.append(
        (
            "  same, tracking URI databricks (MLflow column: http://)",
            cell(workspace_call, fmt_time_ns),
            cell(ff_call, fmt_time_ns),
            cell(workspace_ratio, fmt_ratio),
            f"{low:.2f}x-{high:.2f}x",
            result,
        )
    )
    batch_call = median(batch.call_ns) if batch else None
    per_call = (
        (f"  vs log_metric, synchronous, {plan.sync_calls:,} calls", "sync", 1),
        (f"  vs log_metric(synchronous=False), {plan.async_calls:,} calls", "async", 1),
        (f"  vs log_batch of {BATCH:,} metrics, per point", "batch", BATCH),
    )
    for label, tool, points in per_call:
        got = res.tools.get(tool)
        ml = median(got.call_ns) / points if got else None
        rows.append(
            (
                label,
                cell(ff_call, fmt_time_ns),
                cell(ml, fmt_time_ns),
                cell(quotient(ml, ff_call), fmt_ratio),
                NONE,
                NONE,
            )
        )
    rows.append(
        (
            f"  log_batch of {BATCH:,} metrics, per call",
            NONE,
            cell(batch_call, fmt_time_ns),
            NONE,
            NONE,
            NONE,
        )
    )

    ff_s = median(ff.durable_s) if ff else None
    by_path = {tool: median(durable_seconds(plan, tool, res.tools.get(tool))) for tool in PATHS}
    # The best path is only known when every path was measured.
    measured = None not in by_path.values()
    best = min(PATHS, key=lambda tool: by_path[tool]) if measured else None
    best_s = by_path[best] if best else None
    ratio = quotient(best_s, ff_s)
    if ratio is not None:
        result = verdict(ff_s <= MAX_DURABLE_FACTOR * best_s)
    else:
        result = ERR
    targets.append(("fastflow time until durable", result))
    best_name = PATH_NAMES[best] if best else "error"
    rows.append(
        (
            f"{n:,} points, first call until durable on the server, vs best ({best_name})",
            cell(ff_s, fmt_seconds),
            cell(best_s, fmt_seconds),
            cell(ratio, fmt_ratio),
            f">= {1 / MAX_DURABLE_FACTOR:.2f}x",
            result,
        )
    )
    for tool in PATHS:
        rows.append(
            (
                f"  vs {durable_label(plan, tool)}",
                cell(ff_s, fmt_seconds),
                cell(by_path[tool], fmt_seconds),
                cell(quotient(by_path[tool], ff_s), fmt_ratio),
                NONE,
                NONE,
            )
        )
    ff_rate = quotient(n, ff_s)
    batch_rate = quotient(n, by_path["batch"])
    rows.append(
        (
            f"  points/s until durable, vs log_batch of {BATCH:,}",
            cell(ff_rate, fmt_rate),
            cell(batch_rate, fmt_rate),
            cell(quotient(ff_rate, batch_rate), fmt_ratio),
            NONE,
            NONE,
        )
    )
    ff_sent = median([r.logging for r in ff.requests]) if ff else None
    batch_sent = median([r.logging for r in batch.requests]) if batch else None
    rows.append(
        (
            f"  runs/log-batch requests for {n:,} points, vs log_batch of {BATCH:,}",
            cell(ff_sent, fmt_count),
            cell(batch_sent, fmt_count),
            NONE,
            NONE,
            NONE,
        )
    )
    return rows, targets


def durable_label(plan: Plan, tool: str) -> str:
    if tool == "batch":
        return f"MLflow log_batch, {BATCH:,} points a call"
    if tool == "async":
        return f"MLflow log_metric(synchronous=False) + flush, {plan.async_calls:,} points scaled*"
    return f"MLflow log_metric, synchronous, {plan.sync_calls:,} points scaled*"


def footnotes(plan: Plan) -> list:
    """Notes, each a list of lines that starts with the asterisks marking its rows."""
    return [
        [
            f"* Extrapolated: MLflow's log_metric logged {plan.async_calls:,} points "
            f"(synchronous=False) or {plan.sync_calls:,}",
            "  (synchronous) a trial, each verified on the server; the time shown is the "
            "measured time",
            f"  x {plan.points:,} / the points logged.",
        ],
    ]


def mlflow_column(res: Results) -> str:
    return mlflow_name(res.mlflow_version)


def requests_line(got: Spread, points: int) -> str:
    sent = [r.logging for r in got.requests]
    refused = sum(r.refused for r in got.requests)
    total = [r.total for r in got.requests]
    per_request = quotient(points, median(sent))
    return (
        f"logging requests per trial {spread(sent, fmt_count)} "
        f"(points per request: {cell(per_request, fmt_count)}; {refused:,} refused in all), "
        f"all requests per trial {spread(total, fmt_count)}"
    )


def details(plan: Plan, res: Results) -> list:
    lines = []
    if res.server_settle_s is not None:
        lines.append(
            f"the server's processes went idle {fmt_seconds(res.server_settle_s)} after it "
            f"first answered /health; the trials began after that and a warm-up log-batch of "
            f"{BATCH:,} points"
        )
    for tool in ROUND:
        got = res.tools.get(tool)
        if got is None:
            continue
        points = plan.logged(tool)
        trials = len(got.durable_s)
        what = f"{describe(tool)}, {points:,} points, {plural(trials, 'trial')}"
        if tool == "batch":
            calls = len(got.call_ns)
            lines.append(
                f"{what}, per log_batch call over {calls:,} calls: "
                f"{spread(got.call_ns, fmt_time_ns)}"
            )
        else:
            lines.append(f"{what}, per call (wall clock): {spread(got.call_ns, fmt_time_ns)}")
        if got.cpu_ns:
            lines.append(f"{what}, per call (CPU of the loop): {spread(got.cpu_ns, fmt_time_ns)}")
        lines.append(
            f"{what}, first call until durable: {spread(got.durable_s, fmt_seconds)}"
            f" ({fmt_rate(points / median(got.durable_s))})"
        )
        lines.append(f"{what}, {requests_line(got, points)}")
    if res.server_rows is not None:
        lines.append(
            f"server database at the end: {res.server_rows:,} metric rows in all, every "
            f"trial's points and the {BATCH:,} of the server's warm-up"
        )
    return lines


def present(plan: Plan, mode: str, res: Results, errors: dict) -> int:
    rows, targets = build_rows(plan, res)
    server = "mlflow server on 127.0.0.1, SQLite store, 1 worker"
    return report(
        header_line(mlflow_column(res), [server], mode),
        table_head(mlflow_column(res)),
        rows,
        notes=footnotes(plan),
        legend=[
            "Ratio = MLflow time / fastflow time, or fastflow points/s / MLflow points/s; above 1",
            "means fastflow is faster. Durable target: fastflow's time at most "
            f"{MAX_DURABLE_FACTOR}x the best",
            f"MLflow path's for the same {plan.points:,} points. All figures are medians over "
            "repeated trials,",
            "each in a fresh process, all against one server:",
        ],
        details=details(plan, res),
        targets=targets,
        errors=errors,
    )


def main(argv: Optional[list] = None) -> int:
    return bench_main(__doc__, argv, WORKERS, "bench_remote", (FULL, QUICK), measure, present)


if __name__ == "__main__":
    sys.exit(main())
