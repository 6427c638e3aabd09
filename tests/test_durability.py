"""Crashes, locked databases and interrupts: what was flushed survives, nothing is dropped."""

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import fastflow

CHILD_LOGGER = textwrap.dedent(
    """
    import sys, fastflow
    fastflow.set_tracking_uri(sys.argv[1])
    run = fastflow.start_run()
    print(run.info.run_id, flush=True)
    step = 0
    while True:
        for _ in range(5000):
            fastflow.log_metric("m", float(step), step=step)
            step += 1
        fastflow.flush()
        print(step, flush=True)
    """
)


def test_sigkill_keeps_every_flushed_point(tmp_path):
    db = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_LOGGER, f"sqlite:///{db}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    run_id = child.stdout.readline().strip()
    flushed = 0
    for _ in range(20):
        flushed = int(child.stdout.readline())
    # Killed while logging at full speed, with unflushed points in flight.
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        steps = {
            s for (s,) in conn.execute("SELECT step FROM metrics WHERE run_uuid = ?", (run_id,))
        }
    assert flushed >= 100_000
    assert set(range(flushed)) <= steps


def test_locked_database_error_surfaces_then_recovers(tmp_path):
    db = tmp_path / "locked.db"
    uri = f"sqlite:///{db}"
    fastflow.MlflowClient(uri)  # creates the store
    script = textwrap.dedent(
        """
        import sys, fastflow
        from fastflow.exceptions import MlflowException
        fastflow.set_tracking_uri(sys.argv[1])
        run = fastflow.start_run()
        print(run.info.run_id, flush=True)
        sys.stdin.readline()                      # the parent now holds the write lock
        for step in range(1000):
            fastflow.log_metric("m", float(step), step=step)
        try:
            fastflow.flush()
            print("no error", flush=True)
        except MlflowException as e:
            print("error", e.message.replace("\\n", " "), flush=True)
        sys.stdin.readline()                      # the lock is released
        fastflow.flush()
        fastflow.end_run()
        print("done", flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**_env(), "FASTFLOW_BUSY_TIMEOUT_MS": "200"},
    )
    run_id = child.stdout.readline().strip()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    child.stdin.write("go\n")
    child.stdin.flush()
    outcome = child.stdout.readline()
    assert outcome.startswith("error"), outcome
    assert "locked" in outcome
    holder.execute("ROLLBACK")
    holder.close()
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "done"
    assert child.wait(timeout=30) == 0
    with sqlite3.connect(db) as conn:
        count = conn.execute(
            "SELECT count(*) FROM metrics WHERE run_uuid = ?", (run_id,)
        ).fetchone()[0]
        status = conn.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    assert count == 1000
    assert status == ("FINISHED",)


def test_ctrl_c_interrupts_a_blocked_flush(tmp_path):
    db = tmp_path / "interrupt.db"
    uri = f"sqlite:///{db}"
    fastflow.MlflowClient(uri)
    script = textwrap.dedent(
        """
        import signal, sys, fastflow
        # A runner started in the background hands SIGINT down ignored, and Python then
        # installs no handler of its own.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        fastflow.set_tracking_uri(sys.argv[1])
        fastflow.start_run()
        print("ready", flush=True)
        sys.stdin.readline()
        fastflow.log_metric("m", 1.0)
        print("flushing", flush=True)
        try:
            fastflow.flush()
            print("flushed", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "flushing"
    time.sleep(0.5)
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    assert child.stdout.readline().strip() == "interrupted"
    assert time.monotonic() - started < 5
    holder.execute("ROLLBACK")
    holder.close()
    child.wait(timeout=60)


def _env():
    import os

    return dict(os.environ)


def test_points_become_visible_without_flush(db_uri, tmp_path):
    """Other processes see logged points within the flush interval, with no flush call."""
    with fastflow.start_run() as run:
        fastflow.log_metric("visible", 1.0)
        deadline = time.monotonic() + 10
        seen = 0
        while time.monotonic() < deadline and not seen:
            with sqlite3.connect(tmp_path / "fastflow.db") as conn:
                seen = conn.execute(
                    "SELECT count(*) FROM metrics WHERE run_uuid = ?", (run.info.run_id,)
                ).fetchone()[0]
            time.sleep(0.02)
        assert seen == 1


def test_full_queue_blocks_instead_of_dropping(tmp_path):
    db = tmp_path / "small-queue.db"
    script = textwrap.dedent(
        """
        import sys, fastflow
        fastflow.set_tracking_uri(sys.argv[1])
        with fastflow.start_run() as run:
            for step in range(20_000):
                fastflow.log_metric("m", float(step), step=step)
        print(run.info.run_id)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        check=True,
        env={**_env(), "FASTFLOW_QUEUE_CAPACITY": "16"},
    )
    run_id = out.stdout.strip()
    with sqlite3.connect(db) as conn:
        count = conn.execute(
            "SELECT count(*) FROM metrics WHERE run_uuid = ?", (run_id,)
        ).fetchone()[0]
    assert count == 20_000
