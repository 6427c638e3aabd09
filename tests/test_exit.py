"""The end of a process: what the store could not take by the exit deadline stays in the
spool and one stderr line says so; `fastflow.sync()` delivers it exactly once later. Every
child runs in a fresh interpreter with a spool of its own under tmp_path."""

import json
import os
import pathlib
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from conftest import run_python
from remote_server import MlflowServer

EXIT_TIMEOUT = 5
# Room for interpreter start-up, imports and 7,000 journaled points on a shared 2-core
# machine; far below what MLflow's default retries (7, backing off up to 64 s) would take.
EXIT_MARGIN = 40


def fastflow_lines(stderr):
    return [line for line in stderr.splitlines() if "fastflow" in line]


def undelivered(line):
    """(points not delivered, points kept, spool directory named, points lost) of the line
    `_shutdown` prints; counts are written with thousands separators."""

    def number(pattern):
        found = re.search(pattern, line)
        return int(found.group(1).replace(",", "")) if found else 0

    dir_named = re.search(r" are kept in (\S+): run fastflow\.sync\(\)", line)
    return (
        number(r"([\d,]+) logged points were not delivered"),
        number(r"([\d,]+) are kept in "),
        dir_named.group(1) if dir_named else None,
        number(r"([\d,]+) could not be kept in the spool"),
    )


def journals(directory):
    return sorted(p for p in directory.rglob("*.spool")) if directory.exists() else []


def kill_tree(pid):
    """SIGKILLs a process and every descendant: `mlflow server` serves from a uvicorn child
    that outlives its parent."""
    pids = [pid]
    for parent in pids:
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    pids.extend(int(child) for child in f.read().split())
        except FileNotFoundError:
            pass
    for each in pids:
        try:
            os.kill(each, signal.SIGKILL)
        except ProcessLookupError:
            pass


def child_env(**extra):
    env = dict(os.environ)
    env.update({name: str(value) for name, value in extra.items()})
    return env


def sync(uri, env):
    script = "import json, sys, fastflow\nprint(json.dumps(fastflow.sync(sys.argv[1])))"
    done = subprocess.run(
        [sys.executable, "-c", script, uri],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ---- 1. a tracking server that dies and stays dead -----------------------------------------

OUTAGE_CHILD = textwrap.dedent(
    """
    import sys
    import fastflow as mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("outage")
    run = mlflow.start_run()
    print(run.info.run_id, flush=True)
    for step in range(3_000):
        mlflow.log_metric("m", float(step), step=step)
    mlflow.flush()
    print("flushed", flush=True)
    sys.stdin.readline()
    for step in range(3_000, 10_000):
        mlflow.log_metric("m", float(step), step=step)
    print("logged", flush=True)
    """
)


def test_a_dead_server_leaves_the_rest_in_the_spool_until_sync(tmp_path, mlflow):
    server = MlflowServer(tmp_path / "server").start()
    spool_root = tmp_path / "spool"
    env = child_env(FASTFLOW_SPOOL_DIR=spool_root, FASTFLOW_EXIT_TIMEOUT=EXIT_TIMEOUT)
    child = subprocess.Popen(
        [sys.executable, "-c", OUTAGE_CHILD, server.uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        run_id = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "flushed", child.stderr.read()
        kill_tree(server.process.pid)
        server.process.wait(timeout=60)
        server.process = None
        # MLflow's default retries stay on: the exit deadline alone must end the wait.
        out, err = child.communicate("go\n", timeout=EXIT_TIMEOUT + EXIT_MARGIN)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert out.split() == ["logged"]
    lines = fastflow_lines(err)
    assert len(lines) == 1, err
    records, kept, directory, lost = undelivered(lines[0])
    assert (records, kept, lost) == (7_000, 7_000, 0), lines[0]
    assert directory is not None and os.path.isdir(directory), lines[0]
    assert spool_root in pathlib.Path(directory).parents, lines[0]
    assert journals(spool_root), "the undelivered points must be journaled"

    restarted = MlflowServer(tmp_path / "server", port=server.port).start()
    try:
        first = sync(restarted.uri, env)
        second = sync(restarted.uri, env)
        client = mlflow.MlflowClient(tracking_uri=restarted.uri)
        history = client.get_metric_history(run_id, "m")
        run = client.get_run(run_id)
    finally:
        restarted.stop()
    assert sorted(m.step for m in history) == list(range(10_000))
    assert all(m.value == float(m.step) for m in history)
    # The exit journaled end_run's FINISHED before giving up on the server, and a replay
    # applies the status the process gave its run; only a run the process never ended is
    # set to KILLED.
    assert run.info.status == "FINISHED"
    assert first["points"] == 7_000, first
    assert second["points"] == 0, second
    assert journals(spool_root) == []


# ---- 2. a full disk at exit ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (an empty MLflow 3.17.2 schema alone takes about 950 KB)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(
            f"a full disk needs a small tmpfs, and mounting one failed (root with "
            f"CAP_SYS_ADMIN is required): {done.stderr.strip()}"
        )
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


FULL_DISK_CHILD = textwrap.dedent(
    """
    import sys
    import fastflow as mlflow
    from fastflow.exceptions import MlflowException
    mlflow.set_tracking_uri(sys.argv[1])
    run = mlflow.start_run()
    print(run.info.run_id, flush=True)
    logged = refused = 0
    for step in range(200_000):
        try:
            mlflow.log_metric("m", float(step), step=step)
            logged += 1
        except MlflowException:
            # A refused call queued nothing; the loop goes on as training would.
            refused += 1
    print(logged, refused, flush=True)
    """
)


def metric_count(db, run_id):
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT count(*) FROM metrics WHERE run_uuid = ?", (run_id,)
        ).fetchone()[0]


def fill_the_disk(small_disk, spool_root):
    db = small_disk / "mlflow.db"
    uri = f"sqlite:///{db}"
    env = child_env(FASTFLOW_SPOOL_DIR=spool_root, FASTFLOW_EXIT_TIMEOUT=10)
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, uri],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    run_id, logged, refused = done.stdout.split()
    return db, uri, env, run_id, int(logged), done.stderr


def test_a_full_disk_keeps_the_rest_in_the_spool(small_disk, tmp_path, mlflow):
    spool_root = tmp_path / "spool"
    db, uri, env, run_id, logged, err = fill_the_disk(small_disk, spool_root)
    lines = [line for line in fastflow_lines(err) if "not delivered" in line]
    assert len(lines) == 1, err
    records, kept, directory, lost = undelivered(lines[0])
    assert records > 0 and kept == records and lost == 0, lines[0]
    assert os.path.isdir(directory) and spool_root in pathlib.Path(directory).parents
    assert journals(spool_root)

    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    assert metric_count(db, run_id) + records == logged, "the count must be what is missing"
    replayed = sync(uri, env)
    assert metric_count(db, run_id) == logged, replayed
    history = mlflow.MlflowClient(tracking_uri=uri).get_metric_history(run_id, "m")
    assert len({m.step for m in history}) == len(history) == logged
    assert sync(uri, env)["points"] == 0


def test_a_full_disk_that_also_holds_the_spool_says_what_is_lost(small_disk, tmp_path):
    spool_root = small_disk / "spool"
    db, uri, env, run_id, logged, err = fill_the_disk(small_disk, spool_root)
    lines = [line for line in fastflow_lines(err) if "not delivered" in line]
    assert len(lines) == 1, err
    records, kept, directory, lost = undelivered(lines[0])
    assert records > 0 and lost > 0 and kept + lost == records, lines[0]
    assert "are lost" in lines[0]
    # The reason given for the loss must be the full disk.
    assert "No space left on device" in lines[0], lines[0]

    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    before = metric_count(db, run_id)
    assert before + records == logged, "the count must be what is missing"
    sync(uri, env)
    # Whatever the line said was kept arrives; nothing more can.
    assert metric_count(db, run_id) == before + kept
    if kept == 0:
        assert directory is None and " are kept in " not in lines[0]


# ---- 3. a run deleted under a tight logging loop --------------------------------------------

DELETED_RUN_CHILD = textwrap.dedent(
    """
    import json
    import sys
    import fastflow as mlflow
    from fastflow.exceptions import MlflowException

    def kib(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])

    mlflow.set_tracking_uri(sys.argv[1])
    run = mlflow.start_run()
    print(run.info.run_id, flush=True)
    sys.stdin.readline()
    # Resets VmHWM to the current RSS: the peak below is what the loop added.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    baseline = kib("VmRSS")
    refused_at = message = None
    for step in range(5_000_000):
        if step == 100_000:
            print("deleting", flush=True)
        try:
            mlflow.log_metric("m", 1.0, step=step)
        except MlflowException as e:
            refused_at, message = step, str(e)
            break
    print(json.dumps([refused_at, message, kib("VmHWM") - baseline]), flush=True)
    """
)


def test_logging_to_a_deleted_run_raises_with_bounded_memory(tmp_path, mlflow):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    child = subprocess.Popen(
        [sys.executable, "-c", DELETED_RUN_CHILD, uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(FASTFLOW_SPOOL_DIR=tmp_path / "spool"),
    )
    try:
        run_id = child.stdout.readline().strip()
        # Deleted by another process, as users see it happen. The client is ready before
        # the child starts, so the deletion lands while the child's points are queued.
        client = mlflow.MlflowClient(tracking_uri=uri)
        assert client.get_run(run_id).info.lifecycle_stage == "active"
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "deleting", child.stderr.read()
        client.delete_run(run_id)
        out, err = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    refused_at, message, growth_kib = json.loads(out)
    assert refused_at is not None, "5,000,000 calls on a deleted run were all accepted"
    assert refused_at >= 100_000
    assert "must be in the 'active' state" in message, message
    print(f"\ndeleted run: refused at call {refused_at:,}, peak RSS +{growth_kib / 1024:.0f} MB")
    assert growth_kib < 100 * 1024, f"peak RSS grew by {growth_kib / 1024:.0f} MB"


# ---- 4. the database file alone after a normal exit ------------------------------------------

NORMAL_EXIT_CHILD = textwrap.dedent(
    """
    import sys
    import fastflow as mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    with mlflow.start_run() as first:
        for step in range(5_000):
            mlflow.log_metric("m", float(step), step=step)
    second = mlflow.start_run()
    for step in range(5_000):
        mlflow.log_metric("m", float(-step), step=step)
    print(first.info.run_id, second.info.run_id)
    # The second run is left for the exit to end.
    """
)


def test_the_database_file_alone_holds_everything_after_exit(tmp_path, monkeypatch, mlflow):
    monkeypatch.setenv("FASTFLOW_SPOOL_DIR", str(tmp_path / "spool"))
    db = tmp_path / "mlflow.db"
    first, second = run_python(NORMAL_EXIT_CHILD, f"sqlite:///{db}")
    copy = tmp_path / "copy" / "mlflow.db"
    copy.parent.mkdir()
    shutil.copyfile(db, copy)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{copy}")
    for run_id, sign in ((first, 1), (second, -1)):
        history = client.get_metric_history(run_id, "m")
        assert sorted((m.step, m.value) for m in history) == [
            (step, float(sign * step)) for step in range(5_000)
        ]
        assert client.get_run(run_id).info.status == "FINISHED"
    assert journals(tmp_path / "spool") == []
