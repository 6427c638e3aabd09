"""Runs scenarios for one tool: ``python worker.py mlflow|fastflow BASE TEMPLATE_DB``.

Reads one JSON request a line on stdin ({"name", "input"}) and answers one JSON line on stdout
({"dir", "exit"}) once the scenario's process has ended. The tool is imported once; each
scenario runs in a process forked from this pristine one (nothing logged, no store opened), in
a directory of its own, and ends as a script ends (exit hooks run), so every scenario starts
from what a fresh interpreter has, for the cost of a fork instead of an import.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import pkgutil
import shutil
import sqlite3
import sys
import threading
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import scenarios  # noqa: E402
from scenario import SCENARIOS, Recorder, describe_exception  # noqa: E402

# Variables a user's shell may hold that would point both tools elsewhere.
_CLEARED = [name for name in os.environ if name.startswith(("MLFLOW_", "FASTFLOW_"))]


# Scenarios whose modules (those the tools load on first use: seconds for MLflow's store and
# what it pulls in) are loaded once in this process instead of in every scenario's.
_WARM_UP = ["start_and_end_default", "search_runs[all]", "log_metric_value[float]"]


def _warm_up(module, base, template) -> None:
    """Runs the warm-up scenarios in a child and imports what it imported: nothing is opened
    or configured here, so scenarios still start from nothing."""
    listing = os.path.join(base, "modules.json")
    for name in _WARM_UP:
        directory = os.path.join(base, "warm-up", _dir_name(name))
        os.makedirs(directory)
        _copy_store(template, directory)
        pid = os.fork()
        if pid == 0:
            try:
                _run_child(module, SCENARIOS[name], None, directory, listing=listing)
            finally:
                os._exit(1)
        os.waitpid(pid, 0)
        with open(listing) as f:
            names = json.load(f)
        for loaded in names:
            if loaded not in sys.modules:
                try:
                    importlib.import_module(loaded)
                except Exception:
                    pass


def main() -> None:
    tool, base, template = sys.argv[1], sys.argv[2], sys.argv[3]
    for info in pkgutil.iter_modules(scenarios.__path__):
        importlib.import_module(f"scenarios.{info.name}")
    for name in _CLEARED:
        del os.environ[name]
    module = importlib.import_module("mlflow" if tool == "mlflow" else "fastflow")
    _warm_up(module, base, template)
    for line in sys.stdin:
        request = json.loads(line)
        found = SCENARIOS[request["name"]]
        directory = os.path.join(base, _dir_name(found.name))
        runs = 1
        while os.path.exists(directory):  # generated scenarios run many times
            runs += 1
            directory = os.path.join(base, f"{_dir_name(found.name)}-{runs}")
        os.makedirs(directory)
        if not found.fresh_store:
            _copy_store(template, directory)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(module, found, request.get("input"), directory)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"dir": directory, "exit": os.waitstatus_to_exitcode(status)}))
        sys.stdout.flush()


def _run_child(module, found, given, directory, listing=None) -> None:
    """Never returns: the scenario's process ends the way a script does."""
    os.chdir(directory)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, name in ((1, "stdout.txt"), (2, "stderr.txt")):
        target = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT, 0o644)
        os.dup2(target, fd)
    os.environ["FASTFLOW_SPOOL_DIR"] = os.path.join(directory, "spool")
    os.environ.update(found.env)
    observations_file = os.path.join(directory, "observations.json")

    def save(observations):
        with open(observations_file, "w") as out:
            json.dump(observations, out)

    record = Recorder(save)
    try:
        if found.takes_input:
            found.run(module, record, given)
        else:
            found.run(module, record)
    except BaseException as error:  # a scenario's own failure is an observation too
        record.observations.append(
            {"scenario raised": describe_exception(error), "at": traceback.format_exc()[-2000:]}
        )
    save(record.observations)
    if listing is not None:
        with open(listing, "w") as out:
            json.dump(sorted(sys.modules), out)
    _end_as_a_script_ends()


def _end_as_a_script_ends() -> None:
    """What the interpreter does at the end of a script that anyone can observe: it waits for
    the threads that are not daemons, runs the exit hooks and flushes the standard streams.
    The module teardown after that is left out (os._exit): with MLflow's 2,800 modules it
    costs almost a second a process, nine tenths of a scenario's time, and nothing a
    scenario observes depends on it."""
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _copy_store(template, directory) -> None:
    """The template's Default experiment, as if the store had been created in ``directory``."""
    store = os.path.join(directory, "mlflow.db")
    shutil.copy(template, store)
    made_in = os.path.dirname(template)
    conn = sqlite3.connect(store)
    with conn:
        conn.execute(
            "UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)",
            (made_in, directory),
        )
    conn.close()


def _dir_name(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return f"{safe[:80]}-{abs(hash(name)) % 10**8}"


if __name__ == "__main__":
    main()
