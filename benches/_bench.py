"""What the benchmarks in this directory have in common.

``bench_core.py``, ``bench_ray.py``, ``bench_search.py`` and ``bench_remote.py`` measure
different things, but the same way: every measurement runs in a fresh child process (the
script itself again, with ``--worker``) that prints its result as a line of JSON, and the
parent prints one table of medians, as plain text and as Markdown, and exits nonzero if a
measurement failed or a target was not met. This module holds that common part: starting and
reading the children, formatting figures, printing the tables and the report around them. One
copy keeps the four reports alike, and a fix reaches all of them.

The scripts import it as the sibling module ``_bench``, after putting their own directory on
``sys.path``, so that it is found whatever the working directory, and in the children, which
run the script by its absolute path.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

# Table cells for a figure that could not be measured, and for one that does not apply.
ERR = "error"
NONE = "-"


class BenchError(Exception):
    pass


def sqlite_uri(path: str) -> str:
    return "sqlite:///" + os.path.abspath(path)


def tracking_module(tool: str):
    if tool == "fastflow":
        import fastflow

        return fastflow
    import mlflow

    return mlflow


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def mlflow_name(version: Optional[str] = None) -> str:
    # The version a worker saw, if one reported it, is the one that was measured.
    return f"MLflow {version or version_of('mlflow')}"


# ---- child processes ------------------------------------------------------------------------


def child_env(prefixes: tuple = ("MLFLOW_",)) -> dict:
    # A caller's MLFLOW_* settings (tracking URI, experiment, async logging by default,
    # credentials, retries) would change what is measured; bench_ray drops more.
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def last_json(stdout: str) -> dict:
    # The result is the last JSON line: the tools measured may print before it.
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"no result in the child's output\n{tail(stdout)}")


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    # The child leads its own process group, so this reaches what it started (Ray's raylet
    # and workers, the mlflow server's uvicorn and job runners) and nothing else.
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_child(
    cmd: list, cwd: str, timeout: float, env: Optional[dict] = None, own_group: bool = False
) -> str:
    """Runs ``cmd`` to its end and returns its stdout; raises BenchError if it exits with an
    error or outlives ``timeout``. ``env`` defaults to ``child_env()``. With ``own_group`` the
    child leads a process group of its own, and a timeout kills the whole group: for children
    that start processes of their own."""
    if env is None:
        env = child_env()
    if own_group:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            _, stderr = proc.communicate()
            raise BenchError(f"timed out after {timeout:.0f} s\n{tail(stderr or '')}") from None
        status = proc.returncode
    else:
        # In the parent's process group, a Ctrl-C reaches the child too.
        try:
            done = subprocess.run(
                cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            # subprocess.run hands over the output so far undecoded, whatever ``text`` says.
            stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
            raise BenchError(f"timed out after {timeout:.0f} s\n{tail(stderr or '')}") from None
        stdout, stderr, status = done.stdout, done.stderr, done.returncode
    if status != 0:
        raise BenchError(f"exited with status {status}\n{tail(stderr)}")
    return stdout


def run_json(
    cmd: list, cwd: str, timeout: float, env: Optional[dict] = None, own_group: bool = False
) -> dict:
    return last_json(run_child(cmd, cwd, timeout, env=env, own_group=own_group))


def worker_cmd(script: str, name: str, workdir: str, **params) -> list:
    """The command that runs worker ``name`` of ``script`` (a benchmark's ``__file__``)."""
    # An absolute path, because the child's working directory is its own.
    return [
        sys.executable,
        os.path.abspath(script),
        "--worker",
        name,
        workdir,
        json.dumps(params),
    ]


def run_worker(script: str, root: str, name: str, timeout: float, **params) -> dict:
    """Runs worker ``name`` of ``script`` in a fresh child process and returns its result."""
    # cwd is the worker's own directory so that default stores and artifact roots land there.
    workdir = tempfile.mkdtemp(prefix=name + "-", dir=root)
    try:
        return run_json(worker_cmd(script, name, workdir, **params), workdir, timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args(doc: str, argv: Optional[list]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--worker", nargs=3, metavar=("NAME", "DIR", "PARAMS"), help="internal")
    return parser.parse_args(argv)


def serve_worker(spec: list, workers: dict) -> int:
    """The child's side of ``worker_cmd``: runs the worker and prints its result."""
    name, workdir, params = spec
    # Flushed at once: bench_ray's parent stops its clock when this line arrives.
    print(json.dumps(workers[name](workdir, **json.loads(params))), flush=True)
    return 0


def bench_main(
    doc: str,
    argv: Optional[list],
    workers: dict,
    name: str,
    plans: tuple,
    measure: Callable,
    present: Callable,
) -> int:
    """What every benchmark's ``main`` does: serve a worker when run as one; otherwise pick
    the full or the quick plan of ``plans``, ``measure(plan, root, errors)`` in a temporary
    directory and return ``present(plan, mode, results, errors)``, the exit status."""
    args = parse_args(doc, argv)
    if args.worker:
        return serve_worker(args.worker, workers)
    full, quick = plans
    plan = quick if args.quick else full
    mode = "quick" if args.quick else "full"
    errors: dict = {}
    res = measure_in_tempdir(name, mode, lambda root: measure(plan, root, errors))
    return present(plan, mode, res, errors)


def measure_in_tempdir(name: str, mode: str, measure: Callable[[str], T]) -> T:
    """Runs ``measure`` on a temporary directory that is removed afterwards."""
    # Progress goes to stderr so that stdout holds the report alone.
    print(f"{name} ({mode} run); progress on stderr", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix=name + "-") as root:
        # The children's journals go with the run: a child that ends with os._exit, or is
        # killed, leaves its journal behind for the next process that opens its store.
        os.environ["FASTFLOW_SPOOL_DIR"] = os.path.join(root, "spool")
        return measure(root)


def attempter(
    errors: dict, catch: tuple = (BenchError, ValueError)
) -> Callable[[str, Callable[[], None]], bool]:
    """A function that runs one step of a measurement, reports it on stderr and returns
    whether it succeeded; a failure goes into ``errors`` under the step's label, so that the
    remaining steps still run and the report shows what failed."""

    def attempt(label: str, step: Callable[[], None]) -> bool:
        print(f"  {label} ...", file=sys.stderr, flush=True)
        try:
            step()
            return True
        # ValueError: a child printed something other than the result it was asked for.
        except catch as e:
            errors[label] = str(e)
            return False

    return attempt


# ---- figures --------------------------------------------------------------------------------


def three_digits(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_time_ns(ns: float) -> str:
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if ns >= scale:
            return f"{three_digits(ns / scale)} {unit}"
    return f"{ns:.0f} ns"


def fmt_seconds(seconds: float) -> str:
    return fmt_time_ns(seconds * 1e9)


def fmt_ratio(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x"


def fmt_rate(points_per_s: float) -> str:
    if points_per_s >= 10_000:
        return f"{points_per_s / 1e3:,.0f}k pts/s"
    return f"{points_per_s:,.0f} pts/s"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def median(values: Optional[list]) -> Optional[float]:
    return statistics.median(values) if values else None


def spread(values: list, fmt: Callable[[float], str]) -> str:
    low, high = min(values), max(values)
    return f"median {fmt(statistics.median(values))}, range {fmt(low)} .. {fmt(high)}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def cell(value: Optional[float], fmt: Callable[[float], str]) -> str:
    return fmt(value) if value is not None else ERR


def quotient(a: Optional[float], b: Optional[float]) -> Optional[float]:
    # None when either side failed, so that the ratio's cell reads "error".
    return a / b if a is not None and b else None


# ---- the report -----------------------------------------------------------------------------


def table_head(baseline: str) -> tuple:
    return ("Measurement", "fastflow", baseline, "Ratio", "Target", "Result")


def header_line(baseline: str, extras: list, mode: str) -> str:
    """The report's first line: what was compared, with which versions, on what machine."""
    return " | ".join(
        [
            f"fastflow {version_of('fastflow')} vs {baseline}",
            *extras,
            f"Python {platform.python_version()}",
            f"Python sqlite3 lib {sqlite3.sqlite_version}",
            f"{platform.machine()}, {os.cpu_count()} CPUs",
            f"{mode} run",
        ]
    )


def text_table(head: tuple, rows: list) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(cells) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(r) for r in rows)])


def markdown_table(head: tuple, rows: list) -> str:
    def line(cells) -> str:
        # Markdown drops leading spaces; non-breaking ones keep sub-rows indented.
        first = str(cells[0])
        if first.startswith("  "):
            first = "&nbsp;&nbsp;" + first.strip()
        # A bare asterisk would open emphasis.
        first = first.replace("*", "\\*")
        return "| " + " | ".join([first, *map(str, cells[1:])]) + " |"

    align = "|" + "|".join([":---", *["---:"] * (len(head) - 1)]) + "|"
    return "\n".join([line(head), align, *(line(r) for r in rows)])


def markdown_note(note: list) -> str:
    """A footnote (its lines, the first starting with the asterisks that mark its rows) as one
    Markdown paragraph."""
    marker, text = " ".join(line.strip() for line in note).split(" ", 1)
    return marker.replace("*", "\\*") + " " + text


def report(
    first_line: str,
    head: tuple,
    rows: list,
    *,
    legend: list,
    details: list,
    targets: Optional[list],
    errors: dict,
    notes: tuple = (),
    spaced_notes: bool = False,
) -> int:
    """Prints the report and returns the exit status.

    The table comes first as plain text, followed by the footnotes (lists of lines), the
    ``legend`` lines and the ``details`` as a list; then the targets as (name, verdict), the
    table and footnotes again in Markdown, and what went wrong. ``targets=None`` leaves the
    Targets line out and lets only errors fail the run; ``spaced_notes`` puts a blank line
    after each Markdown footnote, as bench_ray's report always has.
    """
    print(first_line)
    print()
    print(text_table(head, rows))
    print()
    for note in notes:
        print("\n".join(note))
    for line in legend:
        print(line)
    for line in details:
        print(f"  - {line}")
    print()
    if targets is not None:
        print("Targets: " + ", ".join(f"{name} {result}" for name, result in targets))
        print()
    print("Markdown:")
    print()
    print(markdown_table(head, rows))
    if notes:
        print()
    for note in notes:
        print(markdown_note(note))
        if spaced_notes:
            print()
    failed = [name for name, result in targets or () if result != "PASS"]
    if errors:
        print()
        for label, message in errors.items():
            print(f"ERROR in {label}: {message}")
    if failed:
        print()
        print(f"FAILED targets: {', '.join(failed)}")
    return 1 if errors or failed else 0
