"""The ``fastflow`` command (also ``python -m fastflow``): look at runs and experiments in the
terminal, start MLflow's UI on the store, check and repair a store, deliver spooled points.

Exit codes: 0 done (``doctor``: nothing wrong); 1 it could not be done (no such store, run or
experiment; a store of another schema; MLflow missing for ``ui``; ``doctor`` found problems
it left); 2 the command line was wrong (unknown option, a filter or order that does not
parse). The store comes from ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else
``./mlflow.db``, as for the library.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import unquote

import fastflow._terminal as _terminal
from fastflow import _bridge, _context, _databricks, _fastflow
from fastflow.exceptions import MlflowException

OK, FAILED, USAGE = 0, 1, 2

# Error codes that mean the command line asked for something malformed.
_USAGE_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}


class CommandError(Exception):
    def __init__(self, message: str, code: int = FAILED):
        super().__init__(message)
        self.code = code


# ---- where the store is ------------------------------------------------------------------------


def tracking_uri(args) -> str:
    return args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or _context.get_tracking_uri()


def sqlite_path(uri: str):
    """The file a ``sqlite:///`` URI names (three slashes before a relative path, four
    before an absolute one), or None for other URIs."""
    if not uri.startswith("sqlite:///"):
        return None
    return unquote(uri[len("sqlite:///") :].split("?", 1)[0])


def _journals(uri):
    """The spool's journals of the store at ``uri`` (a workspace's are named after its
    host, known once its URI is resolved)."""
    if _databricks.is_workspace_uri(uri) and not _databricks.register(uri):
        return []
    return _fastflow._spool_survey(uri)


def client_for(args, must_exist: bool = True):
    import fastflow

    uri = tracking_uri(args)
    path = sqlite_path(uri)
    if must_exist and path is not None and path != ":memory:" and not os.path.exists(path):
        raise CommandError(
            f"no store at {path} (from {_source(args)}); log a run there first, "
            "or name another store with --tracking-uri"
        )
    return fastflow.MlflowClient(uri)


def _source(args) -> str:
    if args.tracking_uri:
        return "--tracking-uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "MLFLOW_TRACKING_URI"
    return "default"


# ---- output ------------------------------------------------------------------------------------


def emit_json(value) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def emit_csv(headers, rows) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)


def heading(text: str, on: bool) -> str:
    return _terminal.paint(text, "bold", on)


# ---- runs ls -----------------------------------------------------------------------------------


def _experiment_ids(client, wanted):
    from fastflow.entities import ViewType

    if not wanted:
        return [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    ids = []
    for name in wanted:
        found = client.get_experiment_by_name(name)
        if found is None and name.isdigit():
            try:
                found = client.get_experiment(name)
            except MlflowException:
                found = None
        if found is None:
            raise CommandError(f"no experiment named {name!r}")
        ids.append(found.experiment_id)
    return ids


def _common_keys(runs, attribute: str, wanted, limit: int):
    if wanted is not None:
        return [k for k in wanted.split(",") if k]
    counts = {}
    for run in runs:
        for key in getattr(run.data, attribute):
            if not key.startswith("system/"):
                counts[key] = counts.get(key, 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], k))[:limit]


def _tree(runs):
    """Runs in order, each parent's children right after it, with their depth."""
    parent_of = {r.info.run_id: r.data.tags.get("mlflow.parentRunId") for r in runs}
    children = {}
    roots = []
    for run in runs:
        parent = parent_of[run.info.run_id]
        if parent in parent_of and parent != run.info.run_id:
            children.setdefault(parent, []).append(run)
        else:
            roots.append(run)
    ordered = []
    seen = set()

    def visit(run, depth):
        if run.info.run_id in seen:
            return
        seen.add(run.info.run_id)
        ordered.append((run, depth))
        for child in children.get(run.info.run_id, []):
            visit(child, depth + 1)

    for run in roots:
        visit(run, 0)
    for run in runs:  # a cycle of parent tags leaves some unvisited
        visit(run, 0)
    return ordered


def cmd_runs_ls(args) -> int:
    client = client_for(args)
    ids = _experiment_ids(client, args.experiment)
    try:
        runs = client.search_runs(
            ids,
            filter_string=args.filter or "",
            order_by=args.order_by or None,
            max_results=args.max,
        )
    except MlflowException as e:
        if e.error_code in _USAGE_CODES:
            raise CommandError(e.message, USAGE) from None
        raise
    metrics = _common_keys(runs, "metrics", args.metrics, 2)
    params = _common_keys(runs, "params", args.params, 2)
    ordered = _tree(runs)
    if args.json:
        emit_json([_run_record(run, depth) for run, depth in ordered])
        return OK
    if args.csv:
        headers = ["run_id", "run_name", "parent_run_id", "status", "start_time", "end_time"]
        headers += [f"metrics.{k}" for k in metrics] + [f"params.{k}" for k in params]
        rows = []
        for run, _ in ordered:
            info = run.info
            rows.append(
                [
                    info.run_id,
                    info.run_name,
                    run.data.tags.get("mlflow.parentRunId", ""),
                    info.status,
                    info.start_time,
                    info.end_time or "",
                ]
                + [run.data.metrics.get(k, "") for k in metrics]
                + [run.data.params.get(k, "") for k in params]
            )
        emit_csv(headers, rows)
        return OK
    if not ordered:
        print("no runs")
        return OK
    on = _terminal.colours_on()
    headers = ["Run", "Status", "Start", "Duration"] + metrics + params
    rows, styles = [], []
    for run, depth in ordered:
        info = run.info
        name = ("  " * depth) + ("└ " if depth else "") + (info.run_name or info.run_id[:8])
        rows.append(
            [
                name,
                info.status,
                _terminal.when(info.start_time),
                _terminal.duration(info.start_time, info.end_time),
            ]
            + [_terminal.number(run.data.metrics.get(k)) for k in metrics]
            + [run.data.params.get(k, "") for k in params]
        )
        styles.append(
            ["", _terminal.status_style(info.status), "dim", ""]
            + [""] * (len(metrics) + len(params))
        )
    # Run, status, start and duration stay; metric and param columns go from the right
    # when they do not fit.
    minimum = {0: 14, 1: 8, 2: 11, 3: 8}
    print(_terminal.table(headers, rows, styles, on, minimum=minimum, keep=4))
    return OK


def _run_record(run, depth=None) -> dict:
    info = run.info
    record = {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "parent_run_id": run.data.tags.get("mlflow.parentRunId"),
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "lifecycle_stage": info.lifecycle_stage,
        "artifact_uri": info.artifact_uri,
        "metrics": dict(run.data.metrics),
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
    }
    if depth is not None:
        record["depth"] = depth
    return record


# ---- runs show ---------------------------------------------------------------------------------


def _artifacts(client, run_id, path=None, depth=0, out=None, limit=200):
    out = [] if out is None else out
    try:
        found = client.list_artifacts(run_id, path)
    except MlflowException:
        return out
    for item in found:
        if len(out) >= limit:
            break
        out.append(item)
        if item.is_dir and depth < 3:
            _artifacts(client, run_id, item.path, depth + 1, out, limit)
    return out


def cmd_runs_show(args) -> int:
    client = client_for(args)
    run = client.get_run(args.run_id)
    info = run.info
    keys = sorted(run.data.metrics)
    # The sparkline takes what the other columns leave of the line.
    spark_room = max(8, _terminal.width() - max([5, *map(len, keys)]) - 2 - 4 * 12)
    series = {}
    for key in keys:
        # The sampled history keeps every bucket's extremes, the series' min and max too.
        points = client.get_metric_history_sampled(info.run_id, key, max_points=4 * spark_room)
        values = [p.value for p in points]
        finite = [v for v in values if v == v and abs(v) != float("inf")]
        series[key] = {
            "latest": run.data.metrics[key],
            "min": min(finite) if finite else None,
            "max": max(finite) if finite else None,
            "first_step": points[0].step if points else None,
            "last_step": points[-1].step if points else None,
            "values": values,
        }
    artifacts = _artifacts(client, info.run_id)
    if args.json:
        record = _run_record(run)
        record["metrics"] = {
            k: {n: v for n, v in s.items() if n != "values"} for k, s in series.items()
        }
        record["artifacts"] = [
            {"path": a.path, "is_dir": a.is_dir, "file_size": a.file_size} for a in artifacts
        ]
        emit_json(record)
        return OK
    on = _terminal.colours_on()
    experiment = client.get_experiment(info.experiment_id)
    status = _terminal.paint(info.status, _terminal.status_style(info.status), on)
    print(f"{heading(info.run_name or info.run_id, on)}  {info.run_id}")
    print(f"  experiment  {experiment.name} ({experiment.experiment_id})")
    print(
        f"  status      {status}  started {_terminal.when(info.start_time)}"
        f"  took {_terminal.duration(info.start_time, info.end_time)}"
    )
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent:
        print(f"  parent      {parent}")
    print(f"  artifacts   {_terminal.clip(info.artifact_uri or '-', 66)}")
    if run.data.params:
        print()
        print(heading(f"Params ({len(run.data.params)})", on))
        rows = [["  " + k, v] for k, v in sorted(run.data.params.items())]
        print(_terminal.table(["", ""], rows, on=False).split("\n", 1)[1])
    if series:
        print()
        print(heading(f"Metrics ({len(series)})", on))
        rows = []
        for key, s in series.items():
            steps = f"{s['first_step']}..{s['last_step']}" if s["first_step"] is not None else "-"
            rows.append(
                [
                    "  " + key,
                    _terminal.number(s["latest"]),
                    _terminal.number(s["min"]),
                    _terminal.number(s["max"]),
                    steps,
                    _terminal.sparkline(s["values"], spark_room),
                ]
            )
        headers = ["  key", "latest", "min", "max", "steps", "history"]
        print(_terminal.table(headers, rows, on=on))
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    if tags:
        print()
        print(heading(f"Tags ({len(tags)})", on))
        rows = [["  " + k, v.replace("\n", " ")] for k, v in sorted(tags.items())]
        print(_terminal.table(["", ""], rows, on=False).split("\n", 1)[1])
    print()
    print(heading(f"Artifacts ({len(artifacts)})", on))
    if not artifacts:
        print("  none")
    for item in artifacts:
        size = "" if item.is_dir or item.file_size is None else f"  {item.file_size:,} B"
        name = item.path + ("/" if item.is_dir else "")
        print("  " + _terminal.clip(name, 60) + size)
    return OK


# ---- experiments ls ----------------------------------------------------------------------------


def cmd_experiments_ls(args) -> int:
    from fastflow.entities import ViewType

    client = client_for(args)
    view = ViewType.ALL if args.all else ViewType.ACTIVE_ONLY
    experiments = client.search_experiments(view_type=view)
    if args.json:
        emit_json(
            [
                {
                    "experiment_id": e.experiment_id,
                    "name": e.name,
                    "lifecycle_stage": e.lifecycle_stage,
                    "artifact_location": e.artifact_location,
                    "creation_time": e.creation_time,
                    "last_update_time": e.last_update_time,
                    "tags": dict(e.tags),
                }
                for e in experiments
            ]
        )
        return OK
    headers = ["ID", "Name", "Stage", "Created", "Artifact location"]
    rows = [
        [
            e.experiment_id,
            e.name,
            e.lifecycle_stage,
            _terminal.when(e.creation_time),
            e.artifact_location,
        ]
        for e in experiments
    ]
    if args.csv:
        emit_csv(headers, rows)
        return OK
    if not rows:
        print("no experiments")
        return OK
    print(_terminal.table(headers, rows, on=_terminal.colours_on()))
    return OK


# ---- ui ----------------------------------------------------------------------------------------


def cmd_ui(args) -> int:
    if not _bridge.available():
        raise CommandError(
            "fastflow ui starts MLflow's UI, and MLflow is not installed: "
            'pip install "fastflow[mlflow]"'
        )
    uri = tracking_uri(args)
    path = sqlite_path(uri)
    if path is not None and not os.path.exists(path):
        raise CommandError(f"no store at {path} (from {_source(args)})")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", args.host, "--port", str(args.port)]
    print(
        f"MLflow's UI on http://{args.host}:{args.port} for {uri} (Ctrl-C stops it)",
        file=sys.stderr,
    )
    # A session of its own: stopping it stops every worker the server started.
    server = subprocess.Popen(command, start_new_session=True)
    stopping = {}

    def stop(signum=None, frame=None):
        # Only signals here: waiting belongs to the loop below (Popen.wait holds a lock
        # that a wait inside this handler would wait for forever).
        if "deadline" not in stopping:
            stopping["deadline"] = time.monotonic() + 15
            _signal_group(server.pid, signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            try:
                code = server.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stopping and time.monotonic() > stopping["deadline"]:
                    _signal_group(server.pid, signal.SIGKILL)
            except KeyboardInterrupt:
                stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
        # Workers the server left behind go with it.
        _signal_group(server.pid, signal.SIGKILL)
    return OK if stopping or code == 0 else FAILED


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# ---- doctor ------------------------------------------------------------------------------------


class Report:
    def __init__(self, on: bool):
        self.on = on
        self.problems = 0

    def item(self, state: str, label: str, text: str) -> None:
        mark = {"ok": "ok", "warn": "warn", "fail": "FAIL", "info": "--", "fixed": "fixed"}[state]
        style = {"ok": "green", "warn": "yellow", "fail": "red", "fixed": "green"}.get(state, "dim")
        if state == "fail":
            self.problems += 1
        room = min(_terminal.width(), _terminal.WIDTH) - 22
        text = _terminal.clip_middle(text, room)
        print(f"{_terminal.paint(f'{mark:>5}', style, self.on)}  {label:<14} {text}")

    def detail(self, text: str) -> None:
        print(" " * 22 + text)


def _store_facts(path):
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        head = None
        try:
            head = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError:
            pass
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        running = [r[0] for r in conn.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING'")]
        return (head[0] if head else None), mode, running
    finally:
        conn.close()


def _mlflow_opens(uri):
    """(True, version) when MLflow reads the store, (False, why) when not, None without MLflow."""
    if not _bridge.available():
        return None
    code = (
        "import sys, mlflow\n"
        "mlflow.MlflowClient(sys.argv[1]).search_experiments(max_results=1)\n"
        "print(mlflow.__version__)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, uri], capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        return False, "MLflow did not answer within 300 s"
    if done.returncode == 0:
        return True, done.stdout.strip().splitlines()[-1]
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return False, lines[-1] if lines else f"exit code {done.returncode}"


def cmd_doctor(args) -> int:
    uri = tracking_uri(args)
    # Before anything opens the store here: opening it delivers what the survey reports.
    journals = _journals(uri)
    on = _terminal.colours_on()
    report = Report(on)
    report.item("info", "tracking URI", f"{_context.redacted(uri)} (from {_source(args)})")
    path = sqlite_path(uri)
    running = None
    if path is not None:
        if not os.path.exists(path):
            report.item("fail", "store", f"no store at {path}")
            return FAILED
        size = os.path.getsize(path)
        report.item("ok", "store", f"{os.path.abspath(path)} ({size:,} bytes)")
        try:
            head, mode, running = _store_facts(path)
        except Exception as e:
            report.item("fail", "store", f"cannot be read as SQLite: {e}")
            return FAILED
        if head == _fastflow.ALEMBIC_HEAD:
            report.item("ok", "schema", f"head {head} (MLflow 3.17.2's)")
        else:
            report.item(
                "fail",
                "schema",
                f"head {head or 'missing'}; fastflow and MLflow 3.17.2 read "
                f"{_fastflow.ALEMBIC_HEAD}",
            )
        report.item("ok" if mode in ("wal", "delete") else "warn", "journal mode", mode)
        wal = path + "-wal"
        wal_size = os.path.getsize(wal) if os.path.exists(wal) else 0
        if wal_size:
            if args.fix:
                _checkpoint(path)
                left = os.path.getsize(wal) if os.path.exists(wal) else 0
                state = "fixed" if left == 0 else "warn"
                report.item(state, "WAL", f"{wal_size:,} bytes folded into the store")
            else:
                report.item("warn", "WAL", f"{wal_size:,} bytes not in the file yet (--fix)")
        else:
            report.item("ok", "WAL", "empty or absent")
        # After the WAL's check: MLflow's connection folds the WAL in when it closes.
        opened = _mlflow_opens(uri)
        if opened is None:
            report.item("info", "MLflow", 'not installed (pip install "fastflow[mlflow]")')
        elif opened[0]:
            report.item("ok", "MLflow", f"MLflow {opened[1]} opens the store")
        else:
            report.item("fail", "MLflow", f"MLflow cannot open the store: {opened[1]}")
    dead = [j for j in journals if not j[1]]
    live = [j for j in journals if j[1]]
    waiting = sum(j[3] for j in dead)
    if live:
        pids = ", ".join(str(j[2]) for j in live)
        report.item("info", "spool", f"{len(live)} journal(s) of running processes ({pids})")
    left_open = sorted({run_id for j in dead for run_id in j[4]})
    if running is not None:
        left_open = [r for r in left_open if r in set(running)]
    if dead and args.fix:
        files, points, runs_ended, dropped = _context.tracker(uri).sync()
        note = f"; {dropped:,} refused (deleted runs)" if dropped else ""
        report.item("fixed", "spool", f"{points:,} points of {files} journal(s) delivered{note}")
        report.item("fixed", "dead runs", f"{runs_ended} run(s) marked KILLED")
    else:
        if dead:
            report.item(
                "fail",
                "spool",
                f"{waiting:,} points of {len(dead)} dead process(es) wait (sync or --fix)",
            )
        elif not live:
            report.item("ok", "spool", "nothing waiting")
        if left_open:
            report.item(
                "fail",
                "dead runs",
                f"{len(left_open)} run(s) left RUNNING by dead processes (--fix: KILLED)",
            )
            for run_id in left_open[:5]:
                report.detail(run_id)
            if len(left_open) > 5:
                report.detail(f"and {len(left_open) - 5} more")
        elif running is not None:
            report.item("ok", "dead runs", f"none ({len(running)} run(s) RUNNING)")
    verdict, ours, python, safe_mode = _fastflow._sqlite_library()
    library = f"{ours[1]} from {os.path.basename(ours[0])}"
    if verdict == "shared":
        report.item("ok", "SQLite", f"{library}, shared with Python's sqlite3")
    elif verdict == "separate":
        mode_text = "safe mode on" if safe_mode else "safe mode OFF"
        report.item("warn", "SQLite", f"{library}; Python's is another copy ({mode_text})")
    else:
        report.item("ok", "SQLite", f"{library} (this Python has no sqlite3)")
    return FAILED if report.problems else OK


def _checkpoint(path) -> None:
    import sqlite3

    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()


# ---- sync --------------------------------------------------------------------------------------


def cmd_sync(args) -> int:
    uri = tracking_uri(args)
    # Before the store opens here: opening it starts the delivery.
    journals = [j for j in _journals(uri) if not j[1]]
    path = sqlite_path(uri)
    if path is not None and not os.path.exists(path):
        raise CommandError(f"no store at {path} (from {_source(args)})")
    if not journals:
        print("nothing to deliver: no journals of dead processes for this store")
        return OK
    total = sum(j[3] for j in journals)
    progress = _terminal.Progress(total, "delivering")
    outcome = {}

    def deliver():
        try:
            outcome["tracker"] = tracker = _context.tracker(uri)
            outcome["counts"] = tracker.sync()
        except BaseException as e:  # reported on the main thread
            outcome["error"] = e

    worker = threading.Thread(target=deliver, name="fastflow-sync", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
        tracker = outcome.get("tracker")
        if tracker is not None:
            progress.update(tracker.replayed_points())
    if "error" in outcome:
        raise outcome["error"]
    files, points, runs_ended, dropped = outcome["counts"]
    progress.finish(points)
    note = f", {dropped:,} refused (their runs were deleted)" if dropped else ""
    print(f"{points:,} points from {files} journal(s) delivered, {runs_ended} run(s) ended{note}")
    return OK


def cmd_demo(args) -> int:
    from fastflow._demo import main

    main()
    return OK


# ---- the command line --------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--tracking-uri",
        default=argparse.SUPPRESS,
        help="the store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    top = argparse.ArgumentParser(
        prog="fastflow",
        description="Look at fastflow's (and MLflow's) runs, check a store, start MLflow's UI.",
        parents=[common],
    )
    top.add_argument("--version", action="version", version=f"fastflow {_fastflow.__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    runs = commands.add_parser("runs", help="list runs, or show one", parents=[common])
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="COMMAND")
    runs_commands.required = True
    ls = runs_commands.add_parser(
        "ls", help="runs as a table, children under their parent", parents=[common]
    )
    ls.add_argument(
        "--experiment", action="append", help="experiment name or ID (repeatable; default all)"
    )
    ls.add_argument("--filter", help='search_runs filter, e.g. "metrics.loss < 0.5"')
    ls.add_argument("--order-by", action="append", help='e.g. "metrics.loss ASC" (repeatable)')
    ls.add_argument("--max", type=int, default=100, help="at most this many runs (100)")
    ls.add_argument("--metrics", help="metric columns, comma-separated (default: the 2 commonest)")
    ls.add_argument("--params", help="param columns, comma-separated (default: the 2 commonest)")
    formats = ls.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="JSON, one object per run")
    formats.add_argument("--csv", action="store_true", help="CSV with a header row")
    ls.set_defaults(handler=cmd_runs_ls)
    show = runs_commands.add_parser(
        "show", help="params, tags, metrics with their history, artifacts", parents=[common]
    )
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="JSON instead of text")
    show.set_defaults(handler=cmd_runs_show)

    experiments = commands.add_parser("experiments", help="list experiments", parents=[common])
    experiments_commands = experiments.add_subparsers(dest="experiments_command", metavar="COMMAND")
    experiments_commands.required = True
    els = experiments_commands.add_parser("ls", help="experiments as a table", parents=[common])
    els.add_argument("--all", action="store_true", help="deleted experiments too")
    eformats = els.add_mutually_exclusive_group()
    eformats.add_argument("--json", action="store_true", help="JSON, one object per experiment")
    eformats.add_argument("--csv", action="store_true", help="CSV with a header row")
    els.set_defaults(handler=cmd_experiments_ls)

    ui = commands.add_parser(
        "ui", help="MLflow's UI on this store (needs fastflow[mlflow])", parents=[common]
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port (5000)")
    ui.set_defaults(handler=cmd_ui)

    doctor = commands.add_parser(
        "doctor", help="check the store; --fix repairs what it can", parents=[common]
    )
    doctor.add_argument(
        "--fix",
        action="store_true",
        help="deliver dead processes' spooled points, mark their runs KILLED, fold in the WAL",
    )
    doctor.set_defaults(handler=cmd_doctor)

    sync = commands.add_parser(
        "sync", help="deliver points dead processes left in the spool", parents=[common]
    )
    sync.set_defaults(handler=cmd_sync)

    demo = commands.add_parser("demo", help="log a small sweep to ./mlflow.db", parents=[common])
    demo.set_defaults(handler=cmd_demo)
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if not hasattr(args, "tracking_uri"):
        args.tracking_uri = None
    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    try:
        return args.handler(args)
    except CommandError as e:
        print(f"fastflow: error: {e}", file=sys.stderr)
        return e.code
    except MlflowException as e:
        print(f"fastflow: error: {e.message}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `fastflow runs ls | head`: the reader left; nothing is wrong.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return OK


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
