"""Paging and DataFrames for search: the query itself runs in Rust."""

from __future__ import annotations

import base64
import json

from fastflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50000
SEARCH_MAX_RESULTS_PANDAS = 100000


class PagedList(list):
    """A page of results and the token of the next page (None on the last one)."""

    def __init__(self, items, token):
        super().__init__(items)
        self.token = token

    def to_list(self):
        return list(self)


def offset_from_token(page_token) -> int:
    """MLflow's page token: base64 of ``{"offset": N}``."""
    if not page_token:
        return 0
    try:
        decoded = base64.b64decode(page_token)
    except Exception:
        raise MlflowException(
            "Invalid page token, could not base64-decode", error_code=INVALID_PARAMETER_VALUE
        ) from None
    try:
        parsed = json.loads(decoded)
    except ValueError:
        raise MlflowException(
            f"Invalid page token, decoded value={decoded}", error_code=INVALID_PARAMETER_VALUE
        ) from None
    offset = parsed.get("offset") if isinstance(parsed, dict) else None
    if not offset:
        raise MlflowException(
            f"Invalid page token, parsed value={parsed}", error_code=INVALID_PARAMETER_VALUE
        )
    try:
        return int(offset)
    except (TypeError, ValueError):
        raise MlflowException(
            f"Invalid page token, not stringable {offset}", error_code=INVALID_PARAMETER_VALUE
        ) from None


def token_for(offset: int) -> bytes:
    return base64.b64encode(json.dumps({"offset": offset}).encode("utf-8"))


def check_max_results(max_results, allow_none=False, threshold=SEARCH_MAX_RESULTS_THRESHOLD):
    if (max_results is None and not allow_none) or (
        max_results is not None and (not isinstance(max_results, int) or max_results < 1)
    ):
        raise MlflowException(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be "
            "a positive integer",
            error_code=INVALID_PARAMETER_VALUE,
        )
    if max_results is not None and threshold is not None and max_results > threshold:
        raise MlflowException(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be at "
            f"most {threshold}",
            error_code=INVALID_PARAMETER_VALUE,
        )


def _times(millis):
    import pandas as pd

    if all(ms is None for ms in millis):
        # What MLflow's column holds then; its dtype differs between pandas versions.
        return [pd.to_datetime(None, unit="ms", utc=True)] * len(millis)
    # The dtype MLflow's frame gets from a column of pd.to_datetime(ms, unit="ms", utc=True).
    return pd.to_datetime(pd.array(millis, dtype="Int64"), unit="ms", utc=True)


def _mlflow_column_order(introductions):
    """The keys in the order MLflow's ``search_runs`` adds their columns: run after run,
    each run's keys that no earlier run had, in the iteration order of a set of them.

    A set's order follows the keys' hashes, which ``PYTHONHASHSEED`` randomises per
    process, so only this much is fixed: keys of an earlier run come first. Building the
    same sets in the same way gives the order MLflow would give in this very process.
    """
    seen = {}
    for _, keys in introductions:
        for key in set(keys) - set(seen):
            seen[key] = None
    return list(seen)


def arrow_string_dtype():
    """The dtype pandas gives a column of str and None when it is pyarrow-backed (pandas 3's
    default ``str``), else None. Only then do text columns come over as Arrow buffers."""
    import pandas as pd

    dtype = pd.Series(["", None]).dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return dtype
    return None


def _texts(values, rows, string_dtype):
    """A text column: a list of str and None, or Arrow buffers (offsets, data, validity,
    nulls) that become the column pandas would infer from that list."""
    if isinstance(values, list):
        return values
    offsets, data, validity, nulls = values
    if nulls == rows:
        # A list of None only is an object column.
        return [None] * rows
    import pandas as pd
    import pyarrow as pa

    array = pa.LargeStringArray.from_buffers(
        rows,
        pa.py_buffer(offsets),
        pa.py_buffer(data),
        None if validity is None else pa.py_buffer(validity),
        nulls,
    )
    return pd.array(array, dtype=string_dtype)


def frame(columns, string_dtype=None):
    """MLflow's ``search_runs`` DataFrame: run attributes, then metrics, params and tags.
    ``string_dtype``: what ``arrow_string_dtype`` gave, when text columns are Arrow buffers."""
    import numpy as np
    import pandas as pd

    info, (metric_keys, packed), params, tags, introductions = columns
    run_ids, experiment_ids, statuses, artifact_uris, starts, ends = info
    rows = len(starts)

    def texts(values):
        return _texts(values, rows, string_dtype)

    # One float64 array per metric: what MLflow's lists of floats and NaN become.
    values = np.frombuffer(packed, dtype="<f8").reshape(len(metric_keys), rows)
    metrics = zip(metric_keys, values)
    data = {
        "run_id": texts(run_ids),
        "experiment_id": texts(experiment_ids),
        "status": texts(statuses),
        "artifact_uri": texts(artifact_uris),
        "start_time": _times(starts) if rows else [],
        "end_time": _times(ends) if rows else [],
    }
    for prefix, keyed, introduced in zip(
        ("metrics.", "params.", "tags."), (metrics, params, tags), introductions
    ):
        by_key = dict(keyed)
        for key in _mlflow_column_order(introduced):
            data[prefix + key] = by_key[key] if prefix == "metrics." else texts(by_key[key])
    return pd.DataFrame(data)
