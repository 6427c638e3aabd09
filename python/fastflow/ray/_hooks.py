"""Ray's part of the tracking state, hung off ``_integrations``: a worker reads its driver's
context, a driver publishes its own, a run remembers the task that started it, and a worker
on another node logs through the funnel. Nothing here imports Ray; each hook is a no-op in a
process that has not imported it."""

from __future__ import annotations

import logging
import os
import sys

from fastflow import _integrations
from fastflow.ray import _driver

# Set in a process forked from one that had Ray loaded: Ray's client state is not
# fork-safe (a call into it from the child waits forever), so the child leaves Ray alone.
_left_behind = False


def _usable() -> bool:
    return "ray" in sys.modules and not _left_behind


def worker_context(refresh=False):
    """The driver's tracking context when this process is a Ray worker, else None."""
    if _left_behind:
        return None
    if "ray" not in sys.modules and _driver.CONTEXT_ENV not in os.environ:
        return None
    return _driver.worker_context(refresh)


def publish(top_run=None) -> None:
    """Shares the driver's tracking state with its Ray workers (nothing without Ray)."""
    if _usable():
        # Logging goes on if Ray cannot take the context; workers then use their defaults.
        try:
            _driver.publish(top_run)
        except Exception as e:
            logging.getLogger("fastflow").warning(
                "could not share the tracking context with Ray workers: %s", e
            )


def task_of_this_call():
    """The Ray task running this code, when it is a plain task (not an actor method)."""
    if not _usable():
        return None
    return _driver.current_task()


def worker_tracker(uri):
    """The funnel to the driver's store, for a worker that should use one for ``uri``."""
    driver = worker_context()
    if driver is None:
        return None
    from fastflow.ray import _funnel

    return _funnel.worker_tracker(uri, driver)


def _forked() -> None:
    global _left_behind
    _left_behind = _left_behind or "ray" in sys.modules


def install() -> None:
    for event, handler in (
        (_integrations.STACK_CHANGED, publish),
        (_integrations.EXPERIMENT_SET, lambda _: publish(None)),
        (_integrations.TRACKING_URI_SET, lambda _: publish(None)),
        (_integrations.TASK_OF_THIS_CALL, task_of_this_call),
        (_integrations.WORKER_CONTEXT, worker_context),
        (_integrations.WORKER_TRACKER, worker_tracker),
        (_integrations.FORKED_CHILD, _forked),
    ):
        _integrations.register(event, handler)
    # A driver that imported Ray first shares its tracking context as soon as Ray starts,
    # so workers log to the driver's store even before the driver starts a run.
    if "ray" in sys.modules:
        publish(None)
