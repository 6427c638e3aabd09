"""Puts a SQLite library in the process before fastflow's extension loads (on import).

A wheel's extension carries no SQLite and names none: it calls the one the process already
has, so that fastflow and Python's ``sqlite3`` (and MLflow through it) share one library and
so one set of file locks (see the extension's ``sqlite_library``). This loads, for the whole
process, the library Python's ``_sqlite3`` uses (its own file first: a Python that builds
SQLite into ``_sqlite3`` and exports it shares that copy), else the system's
``libsqlite3.so.0``. Loading a library does not start SQLite; importing ``sqlite3`` would.

An extension built from source links the system library itself; this then loads it once more,
which costs nothing.
"""

from __future__ import annotations

# The C half of ctypes: dlopen and dlsym, without the 5 ms that importing ctypes costs.
import _ctypes
import importlib.util
import os

_SYSTEM_NAMES = ("libsqlite3.so.0", "libsqlite3.so")


def _candidates():
    spec = importlib.util.find_spec("_sqlite3")
    if spec is not None and spec.origin == "built-in":
        # Built into the interpreter: its symbols, if exported, are the process's already.
        yield None
    elif spec is not None and spec.origin:
        yield spec.origin
    yield from _SYSTEM_NAMES
    import ctypes.util

    found = ctypes.util.find_library("sqlite3")
    if found:
        yield found


def load() -> str:
    """Makes SQLite's functions visible to libraries loaded after this; returns the file that
    provides them."""
    tried = []
    for name in _candidates():
        shown = name or "the Python executable"
        try:
            library = _ctypes.dlopen(name, os.RTLD_NOW | os.RTLD_GLOBAL)
            # Found in the file or a library it depends on; a copy of SQLite built into
            # `_sqlite3` with its symbols hidden is not.
            _ctypes.dlsym(library, "sqlite3_libversion")
        except OSError as error:
            tried.append(f"{shown}: {error}")
            continue
        return shown
    raise ImportError(
        "fastflow needs the SQLite library (libsqlite3.so.0; Debian and Ubuntu: "
        "apt install libsqlite3-0; Fedora and RHEL: dnf install sqlite-libs) and found none: "
        + "; ".join(tried)
    )


LOADED_FROM = load()
