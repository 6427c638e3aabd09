"""Core benchmark: fastflow against its floors, MLflow 3.17.2 and raw sqlite3, side by side in
one run.

    python benches/bench_core.py            # full run, about ten minutes on 2 busy cores
    python benches/bench_core.py --quick    # smaller counts, for a smoke run

Measures the per-call cost of ``log_metric`` inside an active run against the floor under it,
an empty PyO3 function of the very same signature (what any PyO3 function of that signature
costs; fastflow's entry skips PyO3's parsing for the shape measured here, ``(key, value,
step=i)``, and takes PyO3's path for the others): in wall time, and in instructions counted
by callgrind (the calling thread's, and all threads' including fastflow's writer). Then the
same call against MLflow's, the wall time until a million metrics are durable against the
rusqlite floor (the same rows inserted into the same kind of store in one transaction, with
fastflow's statement, at the same durability; its commit includes SQLite's automatic
checkpoint) and, for reference, against that floor without its checkpoint, with one row per
INSERT, and ``sqlite3.executemany``; and the import time. Prints one table, as plain text and
as Markdown.

The floors are the crate in ``benches/floor``, built here with cargo (release profile, into
``benches/floor/target``, which git ignores) before anything is measured: the cdylib
``_floor`` with the empty ``log_metric`` and the binary ``rusqlite_floor``. The callgrind
rows need valgrind and are skipped, with a note, without it.

Every measurement runs in a fresh child process with its own SQLite store in a temporary
directory, so the tools never share a database file, a writer thread or imported state; the
tools take turns, so that a change in the machine's load falls on all of them. The machine
this runs on may be shared and noisy: every figure is a median over repeated trials.
"""

from __future__ import annotations

import glob
import importlib.machinery
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
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
    child_env,
    fmt_ratio,
    fmt_seconds,
    fmt_time_ns,
    header_line,
    median,
    mlflow_name,
    quotient,
    report,
    run_child,
    spread,
    sqlite_uri,
    table_head,
)
from _bench import run_worker as run_script_worker  # noqa: E402

# Against floors, not absolute figures: a multiple of the least that any PyO3 call of this
# signature, or any one-transaction insert, costs on the same machine in the same run holds
# on a faster or a busier machine alike.
MAX_CALL_RATIO = 2.0
MAX_INSTR_RATIO = 1.5
MIN_DURABLE_RATIO = 0.95
MIN_SYNC_RATIO = 1_000.0
MAX_IMPORT_S = 0.050

INSERT_METRICS = (
    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)"
)

HERE = os.path.dirname(os.path.abspath(__file__))
FLOOR_CRATE = os.path.join(HERE, "floor")
SYSTEM_METRICS_INTERVAL_S = 0.1
# log_metric while the system metrics sampler runs, as a multiple of log_metric without it.
MAX_SAMPLING_RATIO = 1.10
# Inside the crate, where its .gitignore keeps it out of the repository, and kept between
# runs: the first build takes minutes, the next ones a moment.
FLOOR_TARGET = os.path.join(FLOOR_CRATE, "target")
FLOOR_MODULE = "_floor"

# The cell of a row that could not be measured here for a reason that is not an error.
SKIPPED = "skipped"

WORKER_TIMEOUT_S = 900
IMPORT_TIMEOUT_S = 120
BUILD_TIMEOUT_S = 1_800
CALLGRIND_TIMEOUT_S = 900

# Run under callgrind with N and with 2N calls: the difference is N calls' worth, and the
# interpreter's start, the imports and the warm-up cancel. The warm-up resolves the run and
# starts fastflow's writer; the flush before exit puts the writer's work for every point in
# the all-threads count, and os._exit skips the interpreter's teardown, which costs the same
# in both runs but is not worth valgrind's time.
CALLGRIND_SCRIPT = """\
import os
import sys

tool, calls, floor_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if tool == "fastflow":
    import fastflow as module

    module.set_tracking_uri("sqlite:///" + os.path.abspath("store.db"))
    module.start_run()
else:
    sys.path.insert(0, floor_dir)
    import _floor as module
# The function's own cost: a module attribute lookup is not part of it (see timed_calls).
log_metric = module.log_metric
for i in range(1_000):
    log_metric("loss", 0.5, step=i)
if tool == "fastflow":
    module.flush()
for i in range(1_000, 1_000 + calls):
    log_metric("loss", 0.5, step=i)
if tool == "fastflow":
    module.flush()
sys.stdout.flush()
os._exit(0)
"""


@dataclass(frozen=True)
class Plan:
    call_procs: int
    call_trials: int
    call_calls: int
    callgrind_calls: int
    callgrind_runs: int
    sync_trials: int
    sync_calls: int
    async_trials: int
    async_calls: int
    durable_metrics: int
    durable_trials: int
    import_runs: int


FULL = Plan(
    call_procs=5,
    call_trials=20,
    call_calls=10_000,
    callgrind_calls=20_000,
    callgrind_runs=3,
    sync_trials=5,
    sync_calls=40,
    async_trials=5,
    async_calls=100,
    durable_metrics=1_000_000,
    durable_trials=3,
    import_runs=5,
)
QUICK = Plan(
    call_procs=3,
    call_trials=5,
    call_calls=10_000,
    callgrind_calls=10_000,
    callgrind_runs=1,
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


def timed_calls(module, flush: Callable[[], None], trials: int, calls: int) -> list:
    """Per-call nanoseconds of ``module.log_metric``, one figure per trial. fastflow and the
    empty function go through this one loop, so that both pay the same interpreter work."""
    per_call_ns = []
    warmup = 1_000
    # The function's own cost, without the module attribute lookup: fastflow's module has a
    # __getattr__ (MLflow's other names, through the bridge), which keeps CPython from
    # specializing `fastflow.log_metric` lookups (about 35 ns each on 3.11).
    log_metric = module.log_metric
    # Warm-up: the first calls resolve the run and start the writer thread.
    for i in range(warmup):
        log_metric("loss", 0.5, step=i)
    flush()
    step = warmup
    for _ in range(trials):
        start = time.perf_counter_ns()
        for i in range(step, step + calls):
            log_metric("loss", 0.5, step=i)
        per_call_ns.append((time.perf_counter_ns() - start) / calls)
        step += calls
        # Each trial starts with an empty queue, as MLflow's async trials do; sustained
        # throughput with a full queue is what the durable benchmark measures.
        flush()
    return per_call_ns


def worker_fastflow_calls(
    workdir: str, trials: int, calls: int, system_metrics: bool = False
) -> dict:
    import fastflow

    if system_metrics:
        # Ten times a second instead of MLflow's every 10 s: the sampler's thread reads
        # /proc and logs its figures into the same run while the loop runs.
        os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = str(SYSTEM_METRICS_INTERVAL_S)
    fastflow.set_tracking_uri(sqlite_uri(os.path.join(workdir, "fastflow.db")))
    with fastflow.start_run(log_system_metrics=system_metrics):
        per_call_ns = timed_calls(fastflow, fastflow.flush, trials, calls)
    return {"per_call_ns": per_call_ns, "extension": extension_file()}


def extension_file() -> str:
    """The file name of fastflow's extension: it names the ABI it was built for."""
    import fastflow

    return os.path.basename(fastflow._fastflow.__file__)


def worker_floor_calls(workdir: str, trials: int, calls: int, floor_dir: str) -> dict:
    sys.path.insert(0, floor_dir)
    import _floor

    return {"per_call_ns": timed_calls(_floor, lambda: None, trials, calls)}


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


def fastflow_store(path: str) -> str:
    """Creates a store with one run through fastflow and returns the run's id: the schema,
    indexes and foreign keys are then exactly the ones fastflow's own writer inserts into."""
    import fastflow

    run_id = fastflow.MlflowClient(sqlite_uri(path)).create_run("0").info.run_id
    fastflow.flush()
    return run_id


def worker_floor_durable(workdir: str, metrics: int, floor_bin: str, extra: list) -> dict:
    path = os.path.join(workdir, "floor.db")
    run_id = fastflow_store(path)
    # fastflow's writer stays idle here: the floor, a process of its own, has the store to
    # itself while it writes, as fastflow's writer has in its own run.
    out = run_child(
        [floor_bin, path, run_id, str(metrics), *extra], cwd=workdir, timeout=WORKER_TIMEOUT_S
    )
    result = json.loads(out.strip().splitlines()[-1])
    return {
        "seconds": result["seconds"],
        "rows": count_metric_rows(path, run_id),
        "sqlite": result["sqlite"],
    }


def worker_raw_durable(workdir: str, metrics: int) -> dict:
    path = os.path.join(workdir, "raw.db")
    run_id = fastflow_store(path)
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
    "floor-calls": worker_floor_calls,
    "mlflow-calls": worker_mlflow_calls,
    "fastflow-durable": worker_fastflow_durable,
    "floor-durable": worker_floor_durable,
    "raw-durable": worker_raw_durable,
}


# ---- the floors: built once per run, before anything is measured ----------------------------


@dataclass(frozen=True)
class Floor:
    module_dir: str
    binary: str
    pyo3: str
    rusqlite: str


def locked_version(lock_path: str, crate: str) -> Optional[str]:
    with open(lock_path) as f:
        found = re.search(rf'name = "{re.escape(crate)}"\nversion = "([^"]+)"', f.read())
    return found.group(1) if found else None


def build_floor(root: str) -> Floor:
    # The empty function only stands for fastflow's if both go through the same PyO3.
    floor_lock = os.path.join(FLOOR_CRATE, "Cargo.lock")
    main_lock = os.path.join(os.path.dirname(HERE), "Cargo.lock")
    versions = {}
    for crate in ("pyo3", "rusqlite"):
        ours = locked_version(floor_lock, crate)
        theirs = locked_version(main_lock, crate) if os.path.exists(main_lock) else ours
        if ours != theirs:
            raise BenchError(
                f"benches/floor locks {crate} {ours}, fastflow {theirs}: update the floor's "
                "Cargo.toml and Cargo.lock to fastflow's version"
            )
        versions[crate] = ours or "?"
    cargo = shutil.which("cargo")
    if cargo is None:
        raise BenchError("cargo not found on PATH: the floor crate cannot be built")
    env = child_env()
    # PyO3 builds for the interpreter that runs the benchmark, as an extension module (not
    # linked to libpython), the way maturin builds fastflow's wheels.
    env["PYO3_PYTHON"] = sys.executable
    env["PYO3_BUILD_EXTENSION_MODULE"] = "1"
    cmd = [
        cargo,
        "build",
        "--release",
        "--locked",
        "--manifest-path",
        os.path.join(FLOOR_CRATE, "Cargo.toml"),
        "--target-dir",
        FLOOR_TARGET,
    ]
    run_child(cmd, cwd=FLOOR_CRATE, timeout=BUILD_TIMEOUT_S, env=env)
    release = os.path.join(FLOOR_TARGET, "release")
    binary = os.path.join(release, "rusqlite_floor" + (".exe" if os.name == "nt" else ""))
    names = ("lib_floor.so", "lib_floor.dylib", "_floor.dll")
    built = [os.path.join(release, n) for n in names if os.path.exists(os.path.join(release, n))]
    if not built or not os.path.exists(binary):
        raise BenchError(f"cargo built no floor library or no rusqlite_floor in {release}")
    # Python imports an extension by its module name and suffix, not by cargo's file name.
    module_dir = os.path.join(root, "floor-module")
    os.makedirs(module_dir, exist_ok=True)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    shutil.copy2(built[0], os.path.join(module_dir, FLOOR_MODULE + suffix))
    return Floor(module_dir, binary, versions["pyo3"], versions["rusqlite"])


# ---- callgrind ------------------------------------------------------------------------------


def callgrind_counts(out_dir: str) -> tuple:
    """(calling thread, all threads) instructions of one callgrind run with
    ``--separate-threads=yes``: one file per thread, the main thread's marked ``thread: 1``."""
    main, total = None, 0
    files = glob.glob(os.path.join(out_dir, "callgrind.out*"))
    for path in files:
        thread, count = None, None
        with open(path) as f:
            for line in f:
                if line.startswith("thread:"):
                    thread = int(line.split()[1])
                elif line.startswith(("totals:", "summary:")):
                    count = int(line.split()[1])
        if count is None:
            continue
        total += count
        if thread == 1:
            main = count
    if main is None:
        raise BenchError(f"no main thread's count in callgrind's output ({len(files)} files)")
    return main, total


def callgrind_run(
    root: str,
    script: str,
    tool: str,
    calls: int,
    floor_dir: str,
    seed: int,
    python_path: Optional[str] = None,
) -> tuple:
    workdir = os.path.join(root, f"callgrind-{tool}-{calls}-{time.monotonic_ns()}")
    os.makedirs(workdir)
    try:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            # Callgrind counts every thread into one figure by default; fastflow's writer
            # runs beside the caller, and the call's cost is the calling thread's alone.
            "--separate-threads=yes",
            "--callgrind-out-file=" + os.path.join(workdir, "callgrind.out"),
            sys.executable,
            script,
            tool,
            str(calls),
            floor_dir,
        ]
        env = child_env()
        # The interpreter's start hashes with a random seed, and its instruction count moves
        # with the seed by more than thousands of calls cost: the N and 2N runs share one.
        env["PYTHONHASHSEED"] = str(seed)
        if python_path:
            env["PYTHONPATH"] = python_path
        run_child(cmd, cwd=workdir, timeout=CALLGRIND_TIMEOUT_S, env=env)
        return callgrind_counts(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def callgrind_per_call(
    root: str, tool: str, plan: Plan, floor_dir: str, python_path: Optional[str] = None
) -> tuple:
    """Per-call instructions (calling thread, all threads), one pair of lists entry per run.
    ``python_path`` puts another build of fastflow first on the child's path."""
    script = os.path.join(root, "callgrind_calls.py")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(CALLGRIND_SCRIPT)
    n = plan.callgrind_calls
    main, total = [], []
    # A seed per run: a call's own count moves a little with the seed too (dict lookups), so
    # the median is over seeds rather than one seed's figure.
    for seed in range(plan.callgrind_runs):
        main_n, total_n = callgrind_run(root, script, tool, n, floor_dir, seed, python_path)
        main_2n, total_2n = callgrind_run(root, script, tool, 2 * n, floor_dir, seed, python_path)
        main.append((main_2n - main_n) / n)
        total.append((total_2n - total_n) / n)
    return main, total


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


def durable_result(result: dict, metrics: int) -> float:
    if result["rows"] != metrics:
        raise BenchError(
            f"{result['rows']:,} of {metrics:,} metrics were in the store after the timed part"
        )
    return result["seconds"]


def fmt_rate(rows_per_s: float) -> str:
    return f"{rows_per_s / 1e3:,.0f}k rows/s"


def fmt_instr(instructions: float) -> str:
    return f"{instructions:,.0f} instr"


def verdict(ok: bool) -> str:
    # This script's targets do not set the exit status (only errors do): a missed one is
    # reported as a miss, not as a failure.
    return "PASS" if ok else "MISS"


@dataclass
class Results:
    floor: Optional[Floor] = None
    # Per fresh process, the median of its trials.
    ff_call_ns: list = field(default_factory=list)
    floor_call_ns: list = field(default_factory=list)
    ff_extension: Optional[str] = None
    ff_call_trials: list = field(default_factory=list)
    ff_sampling_call_ns: list = field(default_factory=list)
    floor_call_trials: list = field(default_factory=list)
    ff_instr: Optional[list] = None
    ff_instr_all: Optional[list] = None
    floor_instr: Optional[list] = None
    floor_instr_all: Optional[list] = None
    callgrind_skipped: Optional[str] = None
    mlflow_sync_ns: Optional[list] = None
    mlflow_async_ns: Optional[list] = None
    mlflow_version: Optional[str] = None
    ff_durable_s: list = field(default_factory=list)
    floor_durable_s: list = field(default_factory=list)
    floor_no_checkpoint_s: list = field(default_factory=list)
    floor_row_by_row_s: list = field(default_factory=list)
    raw_durable_s: list = field(default_factory=list)
    floor_sqlite: Optional[str] = None
    ff_import_s: Optional[list] = None
    mlflow_import_s: Optional[list] = None


def measure(plan: Plan, root: str, errors: dict) -> Results:
    res = Results()
    attempt = attempter(errors)

    def floor() -> None:
        res.floor = build_floor(root)

    def calls() -> None:
        # The two take turns, process by process, so that a change in the machine's load
        # falls on both.
        for _ in range(plan.call_procs):
            out = run_worker(root, "fastflow-calls", trials=plan.call_trials, calls=plan.call_calls)
            res.ff_extension = out["extension"]
            res.ff_call_trials.extend(out["per_call_ns"])
            res.ff_call_ns.append(statistics.median(out["per_call_ns"]))
            out = run_worker(
                root,
                "fastflow-calls",
                trials=plan.call_trials,
                calls=plan.call_calls,
                system_metrics=True,
            )
            res.ff_sampling_call_ns.append(statistics.median(out["per_call_ns"]))
            if res.floor is None:
                continue
            out = run_worker(
                root,
                "floor-calls",
                trials=plan.call_trials,
                calls=plan.call_calls,
                floor_dir=res.floor.module_dir,
            )
            res.floor_call_trials.extend(out["per_call_ns"])
            res.floor_call_ns.append(statistics.median(out["per_call_ns"]))

    def callgrind() -> None:
        if shutil.which("valgrind") is None:
            res.callgrind_skipped = "valgrind not found on PATH: the callgrind rows are skipped"
            return
        floor_dir = res.floor.module_dir if res.floor else ""
        res.ff_instr, res.ff_instr_all = callgrind_per_call(root, "fastflow", plan, floor_dir)
        if res.floor is not None:
            res.floor_instr, res.floor_instr_all = callgrind_per_call(
                root, "floor", plan, floor_dir
            )

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

    n = plan.durable_metrics

    def ff_durable() -> None:
        res.ff_durable_s.append(durable_result(run_worker(root, "fastflow-durable", metrics=n), n))

    def floor_durable(extra: list, into: list) -> Callable[[], None]:
        def run() -> None:
            out = run_worker(
                root, "floor-durable", metrics=n, floor_bin=res.floor.binary, extra=extra
            )
            into.append(durable_result(out, n))
            res.floor_sqlite = out["sqlite"]

        return run

    def raw_durable() -> None:
        res.raw_durable_s.append(durable_result(run_worker(root, "raw-durable", metrics=n), n))

    def ff_import() -> None:
        res.ff_import_s = import_seconds(root, "fastflow", plan.import_runs)

    def mlflow_import() -> None:
        res.mlflow_import_s = import_seconds(root, "mlflow", plan.import_runs)

    attempt("build the floor crate (cargo build --release)", floor)
    attempt("log_metric per call, fastflow and the empty PyO3 function", calls)
    attempt("callgrind instructions per call", callgrind)
    attempt("MLflow log_metric per call", mlflow_calls)
    # Turn by turn, as the calls; one that fails leaves the others' trials measured.
    for _ in range(plan.durable_trials):
        attempt("fastflow durable metrics", ff_durable)
        if res.floor is not None:
            attempt("rusqlite floor durable metrics", floor_durable([], res.floor_durable_s))
            attempt(
                "rusqlite floor durable metrics, no checkpoint",
                floor_durable(["--no-checkpoint"], res.floor_no_checkpoint_s),
            )
            attempt(
                "rusqlite floor durable metrics, one row per INSERT",
                floor_durable(["1"], res.floor_row_by_row_s),
            )
        attempt("raw sqlite3 durable metrics", raw_durable)
    attempt("import fastflow", ff_import)
    attempt("import mlflow", mlflow_import)
    return res


def floor_row(label: str, ff: Optional[float], floor: Optional[float], fmt, limit: float) -> tuple:
    """A row whose ratio is fastflow's cost as a multiple of the floor's, and whose target is
    the most that multiple may be."""
    ratio = quotient(ff, floor)
    return (
        label,
        fmt(ff) if ff is not None else ERR,
        fmt(floor) if floor is not None else ERR,
        fmt_ratio(ratio) if ratio is not None else ERR,
        f"<= {limit:.2f}x",
        verdict(ratio <= limit) if ratio is not None else ERR,
    )


def callgrind_rows(res: Results) -> list:
    calling = "  instructions per call, calling thread (callgrind)"
    every = "  instructions per call, all threads (callgrind)"
    if res.callgrind_skipped:
        return [
            (calling, SKIPPED, SKIPPED, NONE, f"<= {MAX_INSTR_RATIO:.2f}x", SKIPPED),
            (every, SKIPPED, SKIPPED, NONE, NONE, NONE),
        ]
    ff_all, floor_all = median(res.ff_instr_all), median(res.floor_instr_all)
    ratio_all = quotient(ff_all, floor_all)
    return [
        floor_row(
            calling, median(res.ff_instr), median(res.floor_instr), fmt_instr, MAX_INSTR_RATIO
        ),
        (
            every,
            fmt_instr(ff_all) if ff_all is not None else ERR,
            fmt_instr(floor_all) if floor_all is not None else ERR,
            fmt_ratio(ratio_all) if ratio_all is not None else ERR,
            NONE,
            NONE,
        ),
    ]


def build_rows(plan: Plan, res: Results, mlflow_name: str) -> list:
    """Rows of (measurement, fastflow, baseline, ratio, target, result). Per call against the
    empty function, the ratio is fastflow's cost / the function's, at most the target; every
    other ratio is the baseline's time / fastflow's (for the durable rows, fastflow's rows/s /
    the baseline's), at least the target: above 1 means fastflow is faster."""
    rows = []
    call = median(res.ff_call_ns)
    call_cell = fmt_time_ns(call) if call is not None else ERR
    rows.append(
        floor_row(
            "log_metric(key, value, step=i), per call, vs empty PyO3 function",
            call,
            median(res.floor_call_ns),
            fmt_time_ns,
            MAX_CALL_RATIO,
        )
    )
    rows.extend(callgrind_rows(res))
    sampling = median(res.ff_sampling_call_ns)
    ratio = quotient(sampling, call)
    rows.append(
        (
            f"  while sampling system metrics every {SYSTEM_METRICS_INTERVAL_S} s, vs without",
            fmt_time_ns(sampling) if sampling is not None else ERR,
            call_cell,
            fmt_ratio(ratio) if ratio is not None else ERR,
            f"<= {MAX_SAMPLING_RATIO:.2f}x",
            verdict(ratio <= MAX_SAMPLING_RATIO) if ratio is not None else ERR,
        )
    )
    for label, samples, target in (
        ("synchronous", res.mlflow_sync_ns, MIN_SYNC_RATIO),
        ("synchronous=False", res.mlflow_async_ns, None),
    ):
        base = median(samples)
        ratio = quotient(base, call)
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

    def rate(seconds: list) -> Optional[float]:
        return median([n / s for s in seconds]) if seconds else None

    ff_rate, floor_rate = rate(res.ff_durable_s), rate(res.floor_durable_s)
    floor_ratio = quotient(ff_rate, floor_rate)
    rows.append(
        (
            f"{n:,} metrics durable, vs rusqlite one-transaction floor",
            fmt_rate(ff_rate) if ff_rate is not None else ERR,
            fmt_rate(floor_rate) if floor_rate is not None else ERR,
            fmt_ratio(floor_ratio) if floor_ratio is not None else ERR,
            f">= {MIN_DURABLE_RATIO:.2f}x",
            verdict(floor_ratio >= MIN_DURABLE_RATIO) if floor_ratio is not None else ERR,
        )
    )
    ff_wall, floor_wall = median(res.ff_durable_s), median(res.floor_durable_s)
    rows.append(
        (
            "  wall time (log + flush / one transaction + commit)",
            fmt_seconds(ff_wall) if ff_wall is not None else ERR,
            fmt_seconds(floor_wall) if floor_wall is not None else ERR,
            fmt_ratio(floor_wall / ff_wall) if ff_wall and floor_wall else ERR,
            NONE,
            NONE,
        )
    )
    for label, samples in (
        ("  vs the floor committing without its checkpoint", res.floor_no_checkpoint_s),
        ("  vs the floor with one row per INSERT", res.floor_row_by_row_s),
        ("  vs raw sqlite3 executemany + commit", res.raw_durable_s),
    ):
        base_rate = rate(samples)
        ratio = quotient(ff_rate, base_rate)
        rows.append(
            (
                label,
                fmt_rate(ff_rate) if ff_rate is not None else ERR,
                fmt_rate(base_rate) if base_rate is not None else ERR,
                fmt_ratio(ratio) if ratio is not None else ERR,
                NONE,
                NONE,
            )
        )

    ff_imp = median(res.ff_import_s)
    ml_imp = median(res.mlflow_import_s)
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
    calls = f"{plan.call_procs} processes x {plan.call_trials} x {plan.call_calls:,} calls"
    cg = f"{plan.callgrind_runs} x ({2 * plan.callgrind_calls:,} - {plan.callgrind_calls:,} calls)"
    parts = (
        (f"fastflow log_metric, {calls}, per call", res.ff_call_ns, fmt_time_ns),
        (
            f"fastflow log_metric while sampling system metrics, {calls}, per call",
            res.ff_sampling_call_ns,
            fmt_time_ns,
        ),
        (f"empty PyO3 log_metric, {calls}, per call", res.floor_call_ns, fmt_time_ns),
        (f"fastflow, calling thread, {cg}, per call", res.ff_instr, fmt_instr),
        (f"fastflow, all threads, {cg}, per call", res.ff_instr_all, fmt_instr),
        (f"empty PyO3 function, calling thread, {cg}, per call", res.floor_instr, fmt_instr),
        (f"empty PyO3 function, all threads, {cg}, per call", res.floor_instr_all, fmt_instr),
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
        (
            f"rusqlite floor {n:,} rows in one transaction + commit, {trials} x",
            res.floor_durable_s,
            fmt_seconds,
        ),
        (
            f"the same, commit without checkpoint, {trials} x",
            res.floor_no_checkpoint_s,
            fmt_seconds,
        ),
        (f"the same, one row per INSERT, {trials} x", res.floor_row_by_row_s, fmt_seconds),
        (f"sqlite3 executemany {n:,} rows + commit, {trials} x", res.raw_durable_s, fmt_seconds),
        (f"import fastflow, {runs} fresh processes", res.ff_import_s, fmt_seconds),
        (f"import mlflow, {runs} fresh processes", res.mlflow_import_s, fmt_seconds),
    )
    lines = [f"{label}: {spread(values, fmt)}" for label, values, fmt in parts if values]
    if res.ff_extension:
        # The stable ABI's build is compared in benches/bench_abi.py.
        abi = "the stable ABI" if ".abi3." in res.ff_extension else "this CPython version"
        lines.insert(0, f"fastflow's extension: {res.ff_extension} (built for {abi})")
    if res.callgrind_skipped:
        lines.append(res.callgrind_skipped)
    return lines


def floor_line(res: Results) -> list:
    if res.floor is None:
        return []
    sqlite = f" on SQLite {res.floor_sqlite}" if res.floor_sqlite else ""
    return [f"floors: PyO3 {res.floor.pyo3}, rusqlite {res.floor.rusqlite}{sqlite}"]


def present(plan: Plan, mode: str, res: Results, errors: dict) -> int:
    baseline = mlflow_name(res.mlflow_version)
    return report(
        header_line(baseline, floor_line(res), mode),
        table_head("Baseline"),
        build_rows(plan, res, baseline),
        legend=[
            "Ratio per call against the empty PyO3 function = fastflow cost / its cost;",
            "elsewhere baseline time / fastflow time (durable: fastflow rows/s / baseline",
            "rows/s), so above 1 means fastflow is faster. Per call: median over fresh",
            "processes of each one's median trial. All figures are medians over repeated trials:",
        ],
        details=details(plan, res, baseline),
        targets=None,
        errors=errors,
    )


def main(argv: Optional[list] = None) -> int:
    return bench_main(__doc__, argv, WORKERS, "bench_core", (FULL, QUICK), measure, present)


if __name__ == "__main__":
    sys.exit(main())
