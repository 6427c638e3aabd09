"""ABI benchmark: fastflow's extension built for one CPython version against the same code
built for the stable ABI (abi3, one wheel for every CPython from 3.9 on), side by side in one
run. The wheels are built per version when the stable ABI costs more than 5% on either figure.

    python benches/bench_abi.py            # full run, about fifteen minutes with the builds
    python benches/bench_abi.py --quick    # fewer trials, for a smoke run

Builds the extension twice with cargo (release profile; features ``python`` and ``abi3``, each
into its own directory under ``target/bench-abi``), puts each beside a copy of the Python
package, and measures ``log_metric(key, value, step=i)`` inside an active run with each: the
wall time per call (medians of fresh processes, taking turns) and the instructions per call
on the calling thread counted by callgrind. Under Python 3.9's stable ABI there is no
vectorcall (arguments come as a tuple and a dict) and no borrowed UTF-8 view of a str.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import (  # noqa: E402
    BenchError,
    attempter,
    bench_main,
    child_env,
    fmt_time_ns,
    header_line,
    median,
    quotient,
    report,
    run_json,
    spread,
    table_head,
    worker_cmd,
)
from bench_core import QUICK as CORE_QUICK  # noqa: E402
from bench_core import (  # noqa: E402
    callgrind_per_call,
    extension_file,
    floor_row,
    timed_calls,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The most the stable ABI may add to a figure before the wheels are built per version.
ABI3_LIMIT = 1.05
BUILD_TIMEOUT_S = 1800
WORKER_TIMEOUT_S = 300

VARIANTS = {
    # name: (cargo features, the extension's file name suffix)
    "per-version": ("python", importlib.machinery.EXTENSION_SUFFIXES[0]),
    "abi3": ("abi3", ".abi3.so"),
}


@dataclass(frozen=True)
class Plan:
    call_procs: int
    call_trials: int
    call_calls: int
    callgrind_calls: int
    callgrind_runs: int


FULL = Plan(
    call_procs=5, call_trials=20, call_calls=10_000, callgrind_calls=20_000, callgrind_runs=3
)
QUICK = Plan(
    call_procs=2, call_trials=5, call_calls=10_000, callgrind_calls=10_000, callgrind_runs=1
)


def worker_calls(workdir: str, trials: int, calls: int) -> dict:
    import fastflow

    fastflow.set_tracking_uri("sqlite:///" + os.path.join(workdir, "fastflow.db"))
    with fastflow.start_run():
        per_call_ns = timed_calls(fastflow, fastflow.flush, trials, calls)
    return {"per_call_ns": per_call_ns, "extension": extension_file()}


WORKERS = {"calls": worker_calls}


def build(root: str, name: str) -> str:
    """The package directory of variant ``name``: the Python sources and its extension."""
    features, suffix = VARIANTS[name]
    target = os.path.join(REPO, "target", "bench-abi", name)
    cmd = ["cargo", "build", "--release", "--locked", "--features", features]
    env = {**os.environ, "CARGO_TARGET_DIR": target, "PYO3_PYTHON": sys.executable}
    done = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )
    if done.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed\n{done.stderr[-3000:]}")
    package = os.path.join(root, name)
    shutil.copytree(
        os.path.join(REPO, "python", "fastflow"),
        os.path.join(package, "fastflow"),
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    shutil.copy(
        os.path.join(target, "release", "lib_fastflow.so"),
        os.path.join(package, "fastflow", "_fastflow" + suffix),
    )
    return package


@dataclass
class Results:
    packages: dict = field(default_factory=dict)
    extensions: dict = field(default_factory=dict)
    call_ns: dict = field(default_factory=lambda: {name: [] for name in VARIANTS})
    instructions: dict = field(default_factory=dict)
    callgrind_skipped: Optional[str] = None


def measure(plan: Plan, root: str, errors: dict) -> Results:
    res = Results()
    attempt = attempter(errors)

    def builds() -> None:
        for name in VARIANTS:
            res.packages[name] = build(root, name)

    def calls() -> None:
        for _ in range(plan.call_procs):
            for name, package in res.packages.items():
                workdir = tempfile.mkdtemp(prefix=f"calls-{name}-", dir=root)
                env = {**child_env(), "PYTHONPATH": package}
                cmd = worker_cmd(
                    __file__, "calls", workdir, trials=plan.call_trials, calls=plan.call_calls
                )
                out = run_json(cmd, workdir, WORKER_TIMEOUT_S, env=env)
                res.extensions[name] = out["extension"]
                res.call_ns[name].append(statistics.median(out["per_call_ns"]))
                shutil.rmtree(workdir, ignore_errors=True)

    def callgrind() -> None:
        if shutil.which("valgrind") is None:
            res.callgrind_skipped = "valgrind not found on PATH: the callgrind row is skipped"
            return
        # callgrind_per_call reads only the callgrind counts of bench_core's plan.
        core_plan = dataclasses.replace(
            CORE_QUICK, callgrind_calls=plan.callgrind_calls, callgrind_runs=plan.callgrind_runs
        )
        for name, package in res.packages.items():
            calling, _ = callgrind_per_call(root, "fastflow", core_plan, "", python_path=package)
            res.instructions[name] = calling

    attempt("build both extensions (cargo build --release)", builds)
    if res.packages:
        attempt("log_metric per call, taking turns", calls)
        attempt("callgrind instructions per call", callgrind)
    return res


def abi3_costs(res: Results) -> tuple:
    """(wall-time ratio, instruction ratio) of the stable ABI's build to the per-version one."""
    wall = quotient(median(res.call_ns["abi3"]), median(res.call_ns["per-version"]))
    instr = quotient(
        median(res.instructions.get("abi3")), median(res.instructions.get("per-version"))
    )
    return wall, instr


def row(label: str, values: dict, fmt) -> tuple:
    """The abi3 build's figure against the per-version build's, as bench_core's floor rows."""
    return floor_row(
        label, median(values.get("abi3")), median(values.get("per-version")), fmt, ABI3_LIMIT
    )


def present(plan: Plan, mode: str, res: Results, errors: dict) -> int:
    rows = [row("log_metric per call (wall)", res.call_ns, fmt_time_ns)]
    if res.callgrind_skipped is None:
        rows.append(
            row("  instructions per call, calling thread (callgrind)", res.instructions, fmt_count)
        )
    wall, instr = abi3_costs(res)
    known = [r for r in (wall, instr) if r is not None]
    if not known:
        choice = "no choice: nothing was measured"
    elif max(known) > ABI3_LIMIT:
        choice = "per-version wheels: the stable ABI costs more than 5% on the hot path"
    else:
        choice = "one abi3 wheel: the stable ABI costs at most 5% on the hot path"
    details = [f"{name}: {ext}" for name, ext in res.extensions.items()]
    details += [
        f"{name} per call, medians of {plan.call_procs} processes: {spread(values, fmt_time_ns)}"
        for name, values in res.call_ns.items()
        if values
    ]
    if res.callgrind_skipped:
        details.append(res.callgrind_skipped)
    head = list(table_head("per-version"))
    head[1] = "abi3"
    return report(
        header_line("its abi3 build", [], mode),
        tuple(head),
        rows,
        legend=[
            "Ratio = the abi3 build's cost / the per-version build's; above the target the",
            f"wheels are built per version. Chosen: {choice}.",
        ],
        details=details,
        targets=None,
        errors=errors,
    )


def fmt_count(instructions: float) -> str:
    return f"{instructions:,.0f}"


def main(argv: Optional[list] = None) -> int:
    return bench_main(__doc__, argv, WORKERS, "bench_abi", (FULL, QUICK), measure, present)


if __name__ == "__main__":
    sys.exit(main())
