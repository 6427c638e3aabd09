"""MLflow's exception type, with the same constructor, attributes and error codes."""

from __future__ import annotations

import json

INTERNAL_ERROR = "INTERNAL_ERROR"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
INVALID_STATE = "INVALID_STATE"
BAD_REQUEST = "BAD_REQUEST"

_HTTP_STATUS = {
    INTERNAL_ERROR: 500,
    INVALID_STATE: 500,
    "TEMPORARILY_UNAVAILABLE": 503,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "ENDPOINT_NOT_FOUND": 404,
    RESOURCE_DOES_NOT_EXIST: 404,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    BAD_REQUEST: 400,
    RESOURCE_ALREADY_EXISTS: 400,
    INVALID_PARAMETER_VALUE: 400,
}


class MlflowException(Exception):
    """An error with MLflow's error code (``error_code``, e.g. ``INVALID_PARAMETER_VALUE``)."""

    # No slots of its own (attributes live in the exception's dict): with MLflow in the
    # process, MLflow's exception class is made a subclass of this one, which Python allows
    # only between classes of the same layout.
    __slots__ = ()

    def __init__(self, message, error_code=INTERNAL_ERROR, **kwargs):
        if not isinstance(error_code, str) or not error_code:
            error_code = INTERNAL_ERROR
        self.error_code = error_code
        self.message = str(message)
        self.json_kwargs = kwargs
        super().__init__(self.message)

    def serialize_as_json(self):
        exception_dict = {"error_code": self.error_code, "message": self.message}
        exception_dict.update(self.json_kwargs)
        return json.dumps(exception_dict)

    def get_http_status_code(self):
        return _HTTP_STATUS.get(self.error_code, 500)

    @classmethod
    def invalid_parameter_value(cls, message, **kwargs):
        return cls(message, error_code=INVALID_PARAMETER_VALUE, **kwargs)


class MlflowTracingException(MlflowException):
    """Raised by MLflow's tracing APIs; kept so that imports keep working."""
