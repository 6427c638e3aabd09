"""The slow lane of metric values: how MLflow's client turns a value into a float, and how
MLflow's SQL store words the errors SQLite gives for numbers it cannot store.

The extension calls in here only for what its fast checks do not settle (exact floats and
ints never come here), so the Python behaviour MLflow relies on (``float()``, ``.item()``,
``repr``) is the behaviour users get.
"""

from __future__ import annotations

import sys

from fastflow import _logs
from fastflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException


def _failed(detail):
    return MlflowException(
        f"Failed to convert metric value to float: {detail}", error_code=INVALID_PARAMETER_VALUE
    )


def _item(array):
    try:
        return array.item()
    except Exception as e:
        raise _failed(e) from e


def _from_library(value):
    """A float from a numpy array or a TensorFlow or torch tensor, else ``value`` as it was.
    A library counts only once the program imported it: importing one here costs seconds."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return float(_item(value))
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None and isinstance(value, tensorflow.Tensor):
        try:
            return float(value)
        except Exception as e:
            raise _failed(repr(e)) from e
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return float(_item(value.detach().cpu()))
    return value


def metric_value(value):
    """The value MLflow's client hands its store: a float when ``float()`` makes one (bools,
    numeric strings, numpy scalars, one-element arrays, tensors), else the value unchanged
    for the store to refuse. Errors other than ``ValueError`` reach the caller as they are."""
    if value is None or type(value) is float:
        return value
    converted = _from_library(value)
    if type(converted) is float:
        return converted
    try:
        return float(value)
    except ValueError:
        return value


def _type_name(value):
    """The type name sqlite3 prints, which is the C type's ``tp_name``: the bare name for
    classes defined in Python, the dotted one for extension types outside builtins."""
    cls = type(value)
    if cls.__flags__ & (1 << 9) or cls.__module__ == "builtins":
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


def _trunc(value):
    text = repr(value)
    if len(text) > 300:
        text = f"{text[:150]} ... ({len(text) - 300} characters truncated) ... {text[-150:]}"
    return text


def _row(row):
    return f"({', '.join(_trunc(v) for v in row)})"


def _rows(rows):
    if len(rows) == 1:
        return _row(rows[0])
    if len(rows) > 10:
        head = ", ".join(_row(r) for r in rows[:8])
        tail = ", ".join(_row(r) for r in rows[-2:])
        return f"[{head}  ... displaying 10 of {len(rows)} total bound parameter sets ...  {tail}]"
    return f"[{', '.join(_row(r) for r in rows)}]"


_STATEMENTS = {
    "metrics": 'INSERT INTO metrics ("key", value, timestamp, step, is_nan, run_uuid) '
    "VALUES (?, ?, ?, ?, ?, ?)",
    "tags": 'INSERT INTO tags ("key", value, run_uuid) VALUES (?, ?, ?)',
}


def statement_error(table, rows, bad_row, parameter):
    """MLflow's message when SQLite refuses the insert of ``rows`` into ``table``: the
    ``parameter``-th value (1-based) of ``rows[bad_row]`` cannot be bound, or is a NaN that
    SQLite stores as NULL in a NOT NULL column. SQLAlchemy words it; MLflow passes it on."""
    value = rows[bad_row][parameter - 1]
    if isinstance(value, float):
        column = _STATEMENTS[table].split("(", 1)[1].split(")")[0].split(", ")[parameter - 1]
        detail = f"(sqlite3.IntegrityError) NOT NULL constraint failed: {table}.{column}"
        code = "gkpj"
    else:
        detail = (
            f"(sqlite3.ProgrammingError) Error binding parameter {parameter}: type "
            f"'{_type_name(value)}' is not supported"
        )
        code = "f405"
    lines = [detail, f"[SQL: {_STATEMENTS[table]}]", f"[parameters: {_rows(rows)}]"]
    lines.append(f"(Background on this error at: https://sqlalche.me/e/21/{code})")
    if table == "metrics":
        # MLflow's store flushes new points when it queries the latest values.
        lines.insert(
            0,
            "(raised as a result of Query-invoked autoflush; consider using a "
            "session.no_autoflush block if this flush is occurring prematurely)",
        )
    return "\n".join(lines)


def warn_truncated(message):
    """MLflow's warning for a value cut to its length limit, from the logger MLflow uses."""
    _logs.mlflow_logger("mlflow.utils.validation").warning(message)
