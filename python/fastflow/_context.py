"""Where runs go and what MLflow records about who started them."""

from __future__ import annotations

import getpass
import os
import random
import sys
import threading

from fastflow import _databricks, _fastflow, _git, _integrations
from fastflow.exceptions import MlflowException

_DEFAULT_DB = "mlflow.db"

_lock = threading.Lock()
_tracking_uri = None
_trackers = {}


def set_tracking_uri(uri) -> None:
    """Sets the tracking URI and exports it, so that child processes log to the same store."""
    global _tracking_uri
    if isinstance(uri, os.PathLike):
        # As MLflow reads a path: a file store there. (pathlib only when needed: it costs
        # import time.)
        import pathlib

        uri = pathlib.Path(uri).absolute().resolve().as_uri()
    _tracking_uri = uri
    if uri is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    _integrations.emit(_integrations.TRACKING_URI_SET, uri)


def get_tracking_uri() -> str:
    if _tracking_uri is not None:
        return _tracking_uri
    # In a Ray worker the driver's current choice beats an environment inherited at ray.init.
    driver = _integrations.ask(_integrations.WORKER_CONTEXT, False)
    if driver is not None and driver.get("tracking_uri"):
        return driver["tracking_uri"]
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env
    return "sqlite:///" + os.path.abspath(_DEFAULT_DB)


def _reset_tracking_uri() -> None:
    global _tracking_uri
    _tracking_uri = None


def default_artifact_root() -> str:
    driver = _integrations.ask(_integrations.WORKER_CONTEXT, False)
    if driver is not None and driver.get("artifact_root"):
        return driver["artifact_root"]
    return os.path.abspath("mlruns")


def tracker(uri=None) -> _fastflow.Tracker:
    """The store behind ``uri`` (default: the current tracking URI), opened once per process."""
    uri = uri or get_tracking_uri()
    found = _trackers.get(uri)
    if found is not None:
        return found
    with _lock:
        found = _trackers.get(uri)
        if found is None:
            found = _open(uri)
            _trackers[uri] = found
        return found


_NATIVE_SCHEMES = ("sqlite", "http", "https", "databricks")


def redacted(uri) -> str:
    """``uri`` without its credentials, for messages."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def native(uri) -> bool:
    """Whether fastflow's own store serves ``uri`` (SQLite files, tracking servers and
    Databricks workspaces)."""
    scheme, colon, _ = uri.partition(":")
    return (bool(colon) and scheme.lower() in _NATIVE_SCHEMES) or uri.lower() == "databricks"


def _open(uri):
    # A workspace whose authentication only MLflow's SDK-backed store can carry out is
    # served like any other URI fastflow does not serve.
    if not native(uri) or (_databricks.is_workspace_uri(uri) and not _databricks.register(uri)):
        return _foreign(uri)
    # A Ray worker on another node than its driver's logs through the driver's funnel.
    funnel = _integrations.ask(_integrations.WORKER_TRACKER, uri)
    if funnel is not None:
        return funnel
    return _fastflow.Tracker(uri, default_artifact_root())


def _foreign(uri):
    """MLflow's store for ``uri`` when MLflow is installed (the bridge answers)."""
    foreign = _integrations.ask(_integrations.FOREIGN_STORE, uri)
    if foreign is None:
        raise MlflowException(
            f"fastflow serves sqlite://, http(s):// and databricks tracking URIs; "
            f"{redacted(uri)!r} is served through MLflow: install it with "
            'pip install "fastflow[mlflow]"',
            error_code="INVALID_PARAMETER_VALUE",
        )
    return foreign


def _forget_trackers_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _trackers.clear()
    _integrations.emit(_integrations.FORKED_CHILD)


def user() -> str:
    name = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def system_tags() -> dict:
    """The tags MLflow puts on every new run: user, source name and type, and git's."""
    return {
        "mlflow.user": user(),
        "mlflow.source.name": sys.argv[0] if sys.argv and sys.argv[0] else "<console>",
        "mlflow.source.type": "NOTEBOOK" if _in_notebook() else "LOCAL",
        **_git.git_tags(),
    }


_ADJECTIVES = (
    "able agile amber ample brave bright brisk calm clever cosmic crisp curious daring dashing "
    "deft eager earnest fast fearless fleet gentle gifted glad golden grand happy hardy honest "
    "humble jolly keen kind lively lucid lucky merry mighty nimble noble placid polite proud "
    "quick quiet rapid ready regal robust rustic shiny silent sleek smart snappy solid spry "
    "steady stellar sturdy sunny swift tidy tranquil trusty upbeat valiant vivid warm wise witty "
    "zesty"
).split()
_NOUNS = (
    "ant badger bat bear beaver bison boar cat cheetah colt crab crane deer dove eagle eel "
    "falcon ferret finch fox frog gazelle gecko goat goose hare hawk heron horse ibis jay koala "
    "lamb lark lemur lion lynx mink mole moose moth newt owl panda pig pony puffin quail rabbit "
    "ram raven robin seal shark sheep shrew skunk sloth snail sparrow squid stag stork swan "
    "tapir toad trout turtle vole wasp whale wolf wren yak zebra"
).split()


def random_run_name() -> str:
    """A name in MLflow's style: adjective-noun-number, at most 20 characters."""
    for _ in range(10):
        name = f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(0, 1000)}"
        if len(name) <= 20:
            return name
    return name[:20]
