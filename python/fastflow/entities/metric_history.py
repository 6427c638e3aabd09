"""A metric's history as MLflow's list of ``Metric``, with each ``Metric`` made when touched."""

from __future__ import annotations

import operator
from collections.abc import MutableSequence
from itertools import repeat

from fastflow.entities.metric import Metric


class MetricHistory(MutableSequence):
    """The points of one metric in MLflow's order. Reading a long history makes no object
    per point: the points stay in three packed columns until one is indexed or iterated.
    Every list operation works; one that changes the history first turns it into a list."""

    __slots__ = ("_key", "_timestamps", "_steps", "_values", "_list")

    def __init__(self, key, timestamps, steps, values):
        self._key = key
        self._timestamps = timestamps
        self._steps = steps
        self._values = values
        self._list = None

    def _point(self, index):
        return Metric(self._key, self._values[index], self._timestamps[index], self._steps[index])

    def _as_list(self) -> list:
        if self._list is None:
            self._list = list(iter(self))
            self._timestamps = self._steps = self._values = None
        return self._list

    def __len__(self):
        return len(self._list) if self._list is not None else len(self._values)

    def __getitem__(self, index):
        if self._list is not None:
            return self._list[index]
        if isinstance(index, slice):
            return [self._point(i) for i in range(*index.indices(len(self._values)))]
        position = operator.index(index)
        size = len(self._values)
        if position < 0:
            position += size
        if not 0 <= position < size:
            raise IndexError("list index out of range")
        return self._point(position)

    def __iter__(self):
        if self._list is not None:
            return iter(self._list)
        return map(Metric, repeat(self._key), self._values, self._timestamps, self._steps)

    def __setitem__(self, index, value):
        self._as_list()[index] = value

    def __delitem__(self, index):
        del self._as_list()[index]

    def insert(self, index, value):
        self._as_list().insert(index, value)

    def append(self, value):
        self._as_list().append(value)

    def extend(self, values):
        self._as_list().extend(values)

    def sort(self, *, key=None, reverse=False):
        self._as_list().sort(key=key, reverse=reverse)

    def copy(self) -> list:
        return list(self)

    def __eq__(self, other):
        if isinstance(other, (list, MetricHistory)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __add__(self, other):
        if isinstance(other, (list, MetricHistory)):
            return list(self) + list(other)
        return NotImplemented

    def __radd__(self, other):
        if isinstance(other, list):
            return other + list(self)
        return NotImplemented

    def __iadd__(self, values):
        self.extend(values)
        return self

    def __mul__(self, times):
        return list(self) * times

    __rmul__ = __mul__

    def __repr__(self):
        return repr(list(self))

    def __reduce__(self):
        # Pickled (to another process, say) as the list MLflow returns.
        return (list, (list(self),))
