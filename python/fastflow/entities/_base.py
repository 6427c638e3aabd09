from __future__ import annotations


class _MlflowObject:
    """Equality, iteration and repr over an entity's public properties, as MLflow's have."""

    def __iter__(self):
        for prop in self._properties():
            yield prop, self.__getattribute__(prop)

    @classmethod
    def _properties(cls):
        names = {name for klass in cls.__mro__ for name in vars(klass)}
        return sorted(p for p in names if isinstance(getattr(cls, p, None), property))

    def __eq__(self, other):
        if type(other) is type(self):
            return dict(self) == dict(other)
        return False

    def __hash__(self):
        return id(self)

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self)
        return f"<{type(self).__name__}: {fields}>"
