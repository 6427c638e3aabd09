"""Peer benchmark: fastflow against MLflow 3.17.2, trackio, tensorboardX and wandb (offline),
side by side in one run.

    pip install ".[bench]"                   # the peers this compares against
    python benches/bench_peers.py            # full run, two to three minutes on a quiet machine
    python benches/bench_peers.py --quick    # smaller counts, for a smoke run, under a minute

Measures, for every tool, the per-call cost of logging one scalar at step i inside an active
run, the time until N points are durable (the log loop plus the tool's own flush or close,
with the points counted where they landed), the import time and the peak RSS growth of the
logging process while it logs those N points. Prints one table with fastflow's ratio against
each peer, as plain text and as Markdown. A peer that is not installed is reported as skipped.

Every measurement runs in a fresh child process with its own temporary directory: fastflow
and MLflow write a SQLite store there, tensorboardX its event file, trackio its project
database (``TRACKIO_DIR``) and wandb its offline run (``WANDB_MODE=offline``); nothing leaves
the machine and no dashboard is started. The machine this runs on may be shared and noisy:
every figure is a median over repeated trials, and the trials of the different tools take
turns so that a change in load falls on all of them.

MLflow's synchronous ``log_metric`` commits one transaction per call (milliseconds each), and
wandb's ``log`` waits for its service process to take every record, so both log fewer points
than the others; fastflow is then measured at the same count, so every durable and memory
ratio compares equal work.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import resource
import shutil
import sqlite3
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import (  # noqa: E402
    ERR,
    NONE,
    BenchError,
    attempter,
    bench_main,
    child_env,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    fmt_time_ns,
    header_line,
    median,
    plural,
    quotient,
    report,
    run_child,
    spread,
    sqlite_uri,
    version_of,
)
from _bench import run_worker as run_script_worker  # noqa: E402

WORKER_TIMEOUT_S = 300
IMPORT_TIMEOUT_S = 120
SKIPPED = "skipped"
MEMORY_FLOOR = 2**20

# Settings a caller may have exported that would send a peer to a server, a Space or another
# directory: the workers drop them and set their own.
FOREIGN_ENV = ("MLFLOW_", "WANDB_", "TRACKIO_", "HF_", "GRADIO_")


@dataclass(frozen=True)
class Tool:
    key: str
    name: str
    dist: str
    module: str
    mode: str = ""
    # Only one MLflow row measures the import: the two modes share it.
    imports: bool = True


TOOLS = (
    Tool("fastflow", "fastflow", "fastflow", "fastflow"),
    Tool("mlflow", "MLflow", "mlflow", "mlflow", "synchronous"),
    Tool("mlflow-async", "MLflow", "mlflow", "mlflow", "synchronous=False", imports=False),
    Tool("trackio", "trackio", "trackio", "trackio"),
    Tool("tensorboardx", "tensorboardX", "tensorboardX", "tensorboardX"),
    Tool("wandb", "wandb", "wandb", "wandb", "offline"),
)
PEERS = TOOLS[1:]
BY_KEY = {t.key: t for t in TOOLS}


@dataclass(frozen=True)
class Load:
    call_trials: int
    calls: int
    points: int


@dataclass(frozen=True)
class Plan:
    loads: dict
    rounds: int
    import_runs: int


# Sized so that a trial takes a second or a few on a two-core machine: a call costs MLflow
# ~5 ms synchronous and about as much asynchronous once flushed, wandb 0.1-1 ms, tensorboardX
# ~100 us, trackio ~40 us. The quick plan has one durable trial and one import per tool.
FULL = Plan(
    loads={
        "fastflow": Load(call_trials=20, calls=10_000, points=50_000),
        "mlflow": Load(call_trials=5, calls=20, points=100),
        "mlflow-async": Load(call_trials=5, calls=50, points=200),
        "trackio": Load(call_trials=10, calls=1_000, points=50_000),
        "tensorboardx": Load(call_trials=10, calls=1_000, points=50_000),
        "wandb": Load(call_trials=5, calls=200, points=2_000),
    },
    rounds=3,
    import_runs=5,
)
QUICK = Plan(
    loads={
        "fastflow": Load(call_trials=5, calls=10_000, points=10_000),
        "mlflow": Load(call_trials=3, calls=10, points=50),
        "mlflow-async": Load(call_trials=3, calls=20, points=50),
        "trackio": Load(call_trials=3, calls=500, points=10_000),
        "tensorboardx": Load(call_trials=3, calls=500, points=10_000),
        "wandb": Load(call_trials=3, calls=100, points=500),
    },
    rounds=1,
    import_runs=1,
)

WARMUP_CALLS = 100


# ---- the tools' sandboxes -------------------------------------------------------------------


def offline_env(workdir: str) -> dict:
    """Settings that keep every peer local and inside ``workdir``."""
    return {
        # wandb: no network, no console capture, no git or code snapshot, its caches here.
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_DIR": workdir,
        "WANDB_CACHE_DIR": os.path.join(workdir, "wandb-cache"),
        "WANDB_CONFIG_DIR": os.path.join(workdir, "wandb-config"),
        "WANDB_DATA_DIR": os.path.join(workdir, "wandb-data"),
        "WANDB_ARTIFACT_DIR": os.path.join(workdir, "wandb-artifacts"),
        # trackio reads TRACKIO_DIR once, at import; Hugging Face's hub stays offline.
        "TRACKIO_DIR": os.path.join(workdir, "trackio"),
        "HF_HOME": os.path.join(workdir, "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }


def enter_sandbox(workdir: str) -> None:
    # Before any tool is imported: several read their settings at import.
    for key in [k for k in os.environ if k.startswith(FOREIGN_ENV)]:
        del os.environ[key]
    os.environ.update(offline_env(workdir))


# ---- memory ---------------------------------------------------------------------------------


def _status_kib(field_name: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_kib() -> int:
    # Linux reports kilobytes, macOS bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss


class PeakRss:
    """Peak RSS growth over a stretch of code: the peak during it less the RSS at its start.

    Linux lets a process reset its high-water mark, so the peak is the stretch's own and not
    the import's; elsewhere it falls back to ``ru_maxrss`` before and after, which misses
    growth that stays below an earlier peak."""

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.exact = _status_kib("VmHWM") is not None
        except OSError:
            self.exact = False
        self.start_kib = _status_kib("VmRSS") if self.exact else _maxrss_kib()

    def growth_bytes(self) -> int:
        peak = _status_kib("VmHWM") if self.exact else _maxrss_kib()
        return max(0, (peak or 0) - (self.start_kib or 0)) * 1024


def service_pids() -> list:
    """This process's children: wandb's service, whose memory the logging process's figure
    leaves out."""
    try:
        import psutil
    except ImportError:
        return []
    return [child.pid for child in psutil.Process().children(recursive=True)]


def peak_of(pids: list) -> Optional[int]:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total or None


# ---- sessions: one run of one tool, opened inside the worker ---------------------------------


@dataclass
class Session:
    # ``loop`` logs steps start..stop-1; each tool's loop is written out in full so that the
    # timed code is the call a user writes, with no wrapper around it.
    loop: Callable[[int, int], None]
    # Between per-call trials, so each starts with an empty queue; a no-op where the tool has
    # no public flush short of ending the run.
    drain: Callable[[], None]
    # What makes the points durable: the tool's flush, or its close where that is all it has.
    finish: Callable[[], None]
    # How many of the points logged are where the tool keeps them, read after ``finish``.
    landed: Callable[[], int]
    version: str
    extra: Callable[[], dict] = field(default=lambda: {})


def count_rows(path: str, query: str, args: tuple = ()) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query, args).fetchone()[0]
    finally:
        conn.close()


def open_fastflow(workdir: str, store: Optional[str] = None) -> Session:
    import fastflow

    path = os.path.join(workdir, "fastflow.db")
    fastflow.set_tracking_uri(sqlite_uri(path))
    run_id = fastflow.start_run().info.run_id

    def loop(start: int, stop: int) -> None:
        for i in range(start, stop):
            fastflow.log_metric("loss", 0.5, step=i)

    def finish() -> None:
        fastflow.flush()

    def landed() -> int:
        fastflow.end_run()
        return count_rows(path, "SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,))

    return Session(loop, fastflow.flush, finish, landed, fastflow.__version__)


def open_mlflow(workdir: str, synchronous: bool, store: Optional[str]) -> Session:
    import mlflow

    path = os.path.join(workdir, "mlflow.db")
    if store:
        # Creating the schema (Alembic's migrations) takes seconds of every worker's wall
        # time and is not measured; a copy of one made by the same MLflow skips it.
        shutil.copyfile(store, path)
    mlflow.set_tracking_uri(sqlite_uri(path))
    run_id = mlflow.start_run().info.run_id

    if synchronous:

        def loop(start: int, stop: int) -> None:
            for i in range(start, stop):
                mlflow.log_metric("loss", 0.5, step=i)

        def drain() -> None:
            pass

    else:

        def loop(start: int, stop: int) -> None:
            for i in range(start, stop):
                mlflow.log_metric("loss", 0.5, step=i, synchronous=False)

        drain = mlflow.flush_async_logging

    def finish() -> None:
        drain()

    def landed() -> int:
        mlflow.end_run()
        return count_rows(path, "SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,))

    return Session(loop, drain, finish, landed, mlflow.__version__)


def open_trackio(workdir: str, store: Optional[str] = None) -> Session:
    import trackio

    # No CPU or GPU sampling thread: the run logs what the loop logs and nothing else.
    trackio.init(project="bench", name="run", auto_log_cpu=False, auto_log_gpu=False, embed=False)

    def loop(start: int, stop: int) -> None:
        for i in range(start, stop):
            trackio.log({"loss": 0.5}, step=i)

    def drain() -> None:
        pass

    def landed() -> int:
        path = os.path.join(os.environ["TRACKIO_DIR"], "bench.db")
        return count_rows(path, "SELECT COUNT(*) FROM metrics WHERE run_name = 'run'")

    return Session(loop, drain, trackio.finish, landed, trackio.__version__)


def count_tfevents(logdir: str, tag: str) -> int:
    from tensorboardX.proto import event_pb2

    count = 0
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        with open(path, "rb") as f:
            data = f.read()
        # TFRecord: u64 length, u32 length CRC, payload, u32 payload CRC.
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            pos += 12
            event = event_pb2.Event.FromString(data[pos : pos + length])
            pos += length + 4
            count += sum(1 for value in event.summary.value if value.tag == tag)
    return count


def open_tensorboardx(workdir: str, store: Optional[str] = None) -> Session:
    import tensorboardX
    from tensorboardX import SummaryWriter

    logdir = os.path.join(workdir, "tb")
    writer = SummaryWriter(logdir=logdir)

    def loop(start: int, stop: int) -> None:
        for i in range(start, stop):
            writer.add_scalar("loss", 0.5, i)

    def landed() -> int:
        return count_tfevents(logdir, "loss")

    return Session(loop, writer.flush, writer.close, landed, tensorboardX.__version__)


def count_wandb_history(run_dir: str, key: str) -> int:
    """History rows holding ``key`` in an offline run's .wandb file: LevelDB-log framing (a
    7-byte file header, 32 KiB blocks, chunks with a 7-byte header) around protobuf
    Records."""
    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(os.path.join(run_dir, "*.wandb"))
    with open(path, "rb") as f:
        data = f.read()
    block, pos, record, count = 32768, 7, b"", 0
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        pos += 7
        if kind == 0:
            pos += left - 7
            continue
        chunk = data[pos : pos + length]
        pos += length
        # 1 full, 2 first, 3 middle, 4 last.
        record = chunk if kind in (1, 2) else record + chunk
        if kind in (2, 3):
            continue
        parsed = wandb_internal_pb2.Record.FromString(record)
        if parsed.WhichOneof("record_type") == "history":
            # Newer versions put the key in nested_key, older ones in key.
            keys = [item.key or ".".join(item.nested_key) for item in parsed.history.item]
            count += key in keys
    return count


def open_wandb(workdir: str, store: Optional[str] = None) -> Session:
    import wandb

    # No system-metrics sampling or machine metadata: the run logs what the loop logs.
    settings = wandb.Settings(
        x_disable_stats=True,
        x_disable_meta=True,
        x_disable_machine_info=True,
        x_save_requirements=False,
        console="off",
        disable_git=True,
        save_code=False,
    )
    run = wandb.init(mode="offline", dir=workdir, project="bench", settings=settings)
    run_dir = os.path.dirname(run.dir)
    pids = service_pids()
    service = {}

    def loop(start: int, stop: int) -> None:
        for i in range(start, stop):
            wandb.log({"loss": 0.5}, step=i)

    def drain() -> None:
        pass

    def finish() -> None:
        wandb.finish()
        # Read while the service still runs: a fraction of a millisecond.
        service["peak"] = peak_of(pids)
        # finish() returns before the service has written the last records (a few were
        # missing from the .wandb file when read right after it); teardown waits for the
        # service to exit, file closed.
        wandb.teardown()

    def landed() -> int:
        return count_wandb_history(run_dir, "loss")

    def extra() -> dict:
        return {"service_peak_bytes": service.get("peak")}

    return Session(loop, drain, finish, landed, wandb.__version__, extra)


OPENERS: dict = {
    "fastflow": open_fastflow,
    "mlflow": lambda workdir, store: open_mlflow(workdir, True, store),
    "mlflow-async": lambda workdir, store: open_mlflow(workdir, False, store),
    "trackio": open_trackio,
    "tensorboardx": open_tensorboardx,
    "wandb": open_wandb,
}


# ---- workers: each runs alone in a child process and returns a JSON-able dict ---------------


def worker_calls(
    workdir: str, tool: str, trials: int, calls: int, store: Optional[str] = None
) -> dict:
    enter_sandbox(workdir)
    session = OPENERS[tool](workdir, store)
    # Warm-up: the first calls resolve the run and start writer threads and services.
    warmup = min(WARMUP_CALLS, calls)
    session.loop(0, warmup)
    session.drain()
    step = warmup
    per_call_ns = []
    for _ in range(trials):
        start = time.perf_counter_ns()
        session.loop(step, step + calls)
        per_call_ns.append((time.perf_counter_ns() - start) / calls)
        step += calls
        session.drain()
    session.finish()
    return {"per_call_ns": per_call_ns, "version": session.version}


def worker_durable(workdir: str, tool: str, points: int, store: Optional[str] = None) -> dict:
    enter_sandbox(workdir)
    session = OPENERS[tool](workdir, store)
    memory = PeakRss()
    start = time.perf_counter()
    session.loop(0, points)
    session.finish()
    seconds = time.perf_counter() - start
    growth = memory.growth_bytes()
    return {
        "seconds": seconds,
        "rss_growth_bytes": growth,
        "rss_exact": memory.exact,
        "landed": session.landed(),
        "version": session.version,
        **session.extra(),
    }


def worker_mlflow_store(workdir: str, target: str) -> dict:
    enter_sandbox(workdir)
    from mlflow import MlflowClient

    MlflowClient(sqlite_uri(target)).search_experiments()
    return {"created": os.path.exists(target)}


WORKERS: dict = {
    "calls": worker_calls,
    "durable": worker_durable,
    "mlflow-store": worker_mlflow_store,
}


# ---- the parent: runs workers, collects medians, prints the table ---------------------------


def run_worker(root: str, name: str, **params) -> dict:
    return run_script_worker(__file__, root, name, WORKER_TIMEOUT_S, **params)


def installed(tool: Tool) -> bool:
    return importlib.util.find_spec(tool.module) is not None


def import_seconds(root: str, module: str) -> float:
    workdir = tempfile.mkdtemp(prefix="import-", dir=root)
    try:
        env = {**child_env(FOREIGN_ENV), **offline_env(workdir)}
        code = f"import time;t=time.perf_counter();import {module};print(time.perf_counter()-t)"
        out = run_child([sys.executable, "-c", code], workdir, IMPORT_TIMEOUT_S, env=env)
        return float(out.strip().splitlines()[-1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Results:
    versions: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    call_ns: dict = field(default_factory=dict)
    # Keyed by (tool, points): fastflow is measured at every peer's count.
    durable_s: dict = field(default_factory=dict)
    rss_bytes: dict = field(default_factory=dict)
    service_bytes: dict = field(default_factory=dict)
    rss_exact: bool = True
    import_s: dict = field(default_factory=dict)


def measure(plan: Plan, root: str, errors: dict) -> Results:
    res = Results()
    attempt = attempter(errors)
    for tool in TOOLS:
        if installed(tool):
            res.versions[tool.key] = version_of(tool.dist)
        elif tool.key == "fastflow":
            errors["fastflow"] = "fastflow is not importable (PYTHONPATH or pip install)"
        else:
            res.skipped[tool.key] = f"{tool.dist} is not installed (pip install '.[bench]')"
    present_tools = [t for t in TOOLS if t.key not in res.skipped and t.key in res.versions]

    store: dict = {}
    if "mlflow" in res.versions:
        target = os.path.join(root, "mlflow-store.db")

        def make_store() -> None:
            run_worker(root, "mlflow-store", target=target)

        if attempt("MLflow store to copy", make_store):
            store["mlflow"] = store["mlflow-async"] = target

    for tool in present_tools:
        load = plan.loads[tool.key]

        def calls(tool=tool, load=load) -> None:
            out = run_worker(
                root,
                "calls",
                tool=tool.key,
                trials=load.call_trials,
                calls=load.calls,
                store=store.get(tool.key),
            )
            res.call_ns[tool.key] = out["per_call_ns"]
            res.versions[tool.key] = out["version"]

        attempt(f"{tool.key} per call", calls)

    # fastflow at every peer's count, so that each ratio compares equal work.
    durable_jobs = [(t.key, plan.loads[t.key].points) for t in present_tools]
    if "fastflow" in res.versions:
        counts = sorted({points for _, points in durable_jobs})
        durable_jobs = [("fastflow", n) for n in counts] + [
            job for job in durable_jobs if job[0] != "fastflow"
        ]
    failed: set = set()
    for round_no in range(plan.rounds):
        for key, points in durable_jobs:
            if (key, points) in failed:
                continue

            def durable(key=key, points=points) -> None:
                out = run_worker(root, "durable", tool=key, points=points, store=store.get(key))
                # No warm-up in a durable run: what landed is exactly what the loop logged.
                if out["landed"] != points:
                    raise BenchError(
                        f"{out['landed']:,} of {points:,} points were where {key} keeps them "
                        "after its flush"
                    )
                res.durable_s.setdefault((key, points), []).append(out["seconds"])
                res.rss_bytes.setdefault((key, points), []).append(out["rss_growth_bytes"])
                res.rss_exact = res.rss_exact and out["rss_exact"]
                if out.get("service_peak_bytes"):
                    res.service_bytes.setdefault(key, []).append(out["service_peak_bytes"])

            label = f"{key} {points:,} points durable, round {round_no + 1}"
            if not attempt(label, durable):
                failed.add((key, points))

    # Last, after the workers have imported every tool, so that none pays for a cold page
    # cache; the tools take turns.
    importers = [t for t in present_tools if t.imports]
    broken: set = set()
    for run_no in range(plan.import_runs):
        for tool in importers:
            if tool.key in broken:
                continue

            def timed(tool=tool) -> None:
                res.import_s.setdefault(tool.key, []).append(import_seconds(root, tool.module))

            if not attempt(f"import {tool.module}, run {run_no + 1}", timed):
                broken.add(tool.key)
    return res


def peer_label(tool: Tool, res: Results) -> str:
    version = res.versions.get(tool.key)
    name = f"{tool.name} {version}" if version else tool.name
    return f"{name}, {tool.mode}" if tool.mode else name


def fmt_mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def memory_ratio(ff: Optional[float], peer: Optional[float]) -> str:
    if ff is None or peer is None:
        return ERR
    # Growth below a MiB is within what the allocator and the interpreter move on their own:
    # such a side counts as a MiB, and the ratio says it is a bound.
    if max(ff, peer) < MEMORY_FLOOR:
        return NONE
    if ff < MEMORY_FLOOR:
        return "> " + fmt_ratio(peer / MEMORY_FLOOR)
    if peer < MEMORY_FLOOR:
        return "< " + fmt_ratio(MEMORY_FLOOR / ff)
    return fmt_ratio(peer / ff)


def build_rows(plan: Plan, res: Results) -> list:
    """Rows of (measurement, fastflow, peer, ratio); every ratio is the peer's time or memory
    over fastflow's (points/s: fastflow's over the peer's), so above 1 means fastflow is
    faster or smaller."""
    rows: list = []

    def section(title: str, ff_cell: str) -> None:
        rows.append((title, ff_cell, NONE, NONE))

    def skipped_row(tool: Tool, suffix: str = "") -> None:
        rows.append((f"  vs {peer_label(tool, res)}{suffix}", NONE, SKIPPED, NONE))

    def cell(value: Optional[float], fmt) -> str:
        return fmt(value) if value is not None else ERR

    ff_call = median(res.call_ns.get("fastflow"))
    section("log one scalar at step i, per call", cell(ff_call, fmt_time_ns))
    for tool in PEERS:
        if tool.key in res.skipped:
            skipped_row(tool)
            continue
        peer = median(res.call_ns.get(tool.key))
        ratio = quotient(peer, ff_call)
        rows.append(
            (
                f"  vs {peer_label(tool, res)}",
                cell(ff_call, fmt_time_ns),
                cell(peer, fmt_time_ns),
                cell(ratio, fmt_ratio),
            )
        )

    def rate(key: str, points: int) -> Optional[float]:
        seconds = res.durable_s.get((key, points))
        return median([points / s for s in seconds]) if seconds else None

    section("N points durable (log loop + flush/close), points/s", NONE)
    for tool in PEERS:
        n = plan.loads[tool.key].points
        if tool.key in res.skipped:
            skipped_row(tool, f", N = {n:,}")
            continue
        ff, peer = rate("fastflow", n), rate(tool.key, n)
        rows.append(
            (
                f"  vs {peer_label(tool, res)}, N = {n:,}",
                cell(ff, fmt_rate),
                cell(peer, fmt_rate),
                cell(quotient(ff, peer), fmt_ratio),
            )
        )

    ff_import = median(res.import_s.get("fastflow"))
    section("import time, fresh interpreter", cell(ff_import, fmt_seconds))
    for tool in PEERS:
        if not tool.imports:
            continue
        label = f"import {tool.module}"
        if tool.key in res.skipped:
            rows.append((f"  vs {label}", NONE, SKIPPED, NONE))
            continue
        peer = median(res.import_s.get(tool.key))
        rows.append(
            (
                f"  vs {label}",
                cell(ff_import, fmt_seconds),
                cell(peer, fmt_seconds),
                cell(quotient(peer, ff_import), fmt_ratio),
            )
        )

    section("peak RSS growth of the logging process for N points", NONE)
    for tool in PEERS:
        n = plan.loads[tool.key].points
        if tool.key in res.skipped:
            skipped_row(tool, f", N = {n:,}")
            continue
        ff = median(res.rss_bytes.get(("fastflow", n)))
        peer = median(res.rss_bytes.get((tool.key, n)))
        star = "*" if tool.key == "wandb" else ""
        rows.append(
            (
                f"  vs {peer_label(tool, res)}, N = {n:,}{star}",
                cell(ff, fmt_mib),
                cell(peer, fmt_mib),
                memory_ratio(ff, peer),
            )
        )
    return rows


def details(plan: Plan, res: Results) -> list:
    lines = []
    for tool in TOOLS:
        if tool.key in res.skipped:
            continue
        name = "fastflow" if tool.key == "fastflow" else peer_label(tool, res)
        load = plan.loads[tool.key]
        samples = res.call_ns.get(tool.key)
        if samples:
            what = f"{load.call_trials} x {load.calls:,} calls"
            lines.append(f"{name} per call, {what}: {spread(samples, fmt_time_ns)}")
    for (key, points), seconds in sorted(res.durable_s.items(), key=lambda kv: kv[0]):
        name = "fastflow" if key == "fastflow" else peer_label(BY_KEY[key], res)
        lines.append(
            f"{name}, {points:,} points durable, {plural(len(seconds), 'trial')}: "
            f"{spread(seconds, fmt_seconds)}"
        )
    for tool in TOOLS:
        samples = res.import_s.get(tool.key)
        if samples:
            runs = plural(len(samples), "run")
            lines.append(
                f"import {tool.module}, {runs}, each in a fresh interpreter: "
                f"{spread(samples, fmt_seconds)}"
            )
    service = res.service_bytes.get("wandb")
    if service:
        lines.append(f"wandb's service process, peak RSS: {spread(service, fmt_mib)}")
    return lines


def legend(plan: Plan, res: Results) -> list:
    if res.rss_exact:
        memory = [
            "Memory: the peak RSS during the loop and the flush (the high-water mark reset",
            "before it) less the RSS before it, of the process that logs.",
        ]
    else:
        memory = ["Memory: ru_maxrss after the flush less ru_maxrss before the loop."]
    lines = [
        "Ratio = peer / fastflow for times and memory, fastflow / peer for points/s: above 1",
        "means fastflow is faster or smaller. Every figure is a median over repeated trials,",
        "each tool in fresh child processes with its own temporary directory.",
        f"Per call: trials after a warm-up of up to {WARMUP_CALLS} calls; between trials the",
        "tool's flush where it has one short of ending the run (fastflow.flush,",
        "mlflow.flush_async_logging, SummaryWriter.flush); trackio and wandb have none.",
        "Durable: the log loop plus fastflow.flush(); MLflow's commit per call (synchronous)",
        "or mlflow.flush_async_logging() (synchronous=False); SummaryWriter.close(), which",
        "fsyncs; trackio.finish() (SQLite WAL, synchronous=NORMAL); wandb.finish() and",
        "wandb.teardown(), which waits for the service to close the .wandb file. Then the",
        "points are counted where each tool keeps them (SQLite rows, tfevents records, .wandb",
        "history records). MLflow and wandb log fewer points (N); fastflow is measured at every",
        "peer's N, so each ratio compares the same work.",
        *memory,
        f"A side that grew less than {fmt_mib(MEMORY_FLOOR)} counts as that much, and the",
        "ratio is then a bound.",
    ]
    # MLflow's two modes share one message.
    for message in dict.fromkeys(res.skipped.values()):
        lines.append(f"Skipped: {message}.")
    lines.append("Each figure's trials:")
    return lines


WANDB_NOTE = [
    "* wandb's service process does its writing; its memory is not in this figure (below,",
    "  its peak RSS).",
]


def present(plan: Plan, mode: str, res: Results, errors: dict) -> int:
    shown = [t for t in PEERS if t.imports]
    peers = ", ".join(f"{t.name} {res.versions.get(t.key, SKIPPED)}" for t in shown)
    head = ("Measurement", "fastflow", "Peer", "Ratio")
    return report(
        header_line(peers, [], mode),
        head,
        build_rows(plan, res),
        legend=legend(plan, res),
        details=details(plan, res),
        targets=None,
        errors=errors,
        notes=(WANDB_NOTE,) if "wandb" not in res.skipped else (),
    )


def main(argv: Optional[list] = None) -> int:
    return bench_main(__doc__, argv, WORKERS, "bench_peers", (FULL, QUICK), measure, present)


if __name__ == "__main__":
    sys.exit(main())
