"""Exceptions: one class per kind of failure, each carrying the server's error `code`."""


class CrpcError(Exception):
    """A request the server refused, or a task that did not succeed.

    `status` is the HTTP status (0 when the server was unreachable), `code` the stable
    snake_case code of the server's error body (`validation_failed`, `no_task`, ...),
    `details` its structured context (`{"field": "args[0]"}`), when it gave any.
    """

    def __init__(self, message, *, status=0, code="error", details=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details

    def __str__(self):
        where = f"{self.status} " if self.status else ""
        return f"{self.message} ({where}{self.code})"


class Unreachable(CrpcError):
    """The server did not answer (connection refused, DNS, TLS, timeout)."""


class AuthError(CrpcError):
    """401: no token, a bad or expired one; 403: the token's role may not do this."""


class NotFound(CrpcError):
    """404: no such task or batch (or it belongs to someone else)."""


class InvalidRequest(CrpcError):
    """400, 413, 422: the request was refused as it is (bad arguments, unknown package...).

    For 422 `details["field"]` names the field, e.g. `args[0]`."""


class Conflict(CrpcError):
    """409: the task already finished (a cancel), or a key was reused with another body."""


class RateLimited(CrpcError):
    """429: too many requests or long-polls for this token, or the owner's queue is full.

    `retry_after` is the server's `Retry-After`, seconds (None when it gave none)."""

    def __init__(self, message, *, retry_after=None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Unavailable(CrpcError):
    """503: the server is draining or its database does not answer."""


class ServerError(CrpcError):
    """Any other status (a 5xx is a server bug: please report it)."""


class TaskFailed(CrpcError):
    """The task ended `failed`: `kind` is `fatal`, `retryable` (out of attempts), `timeout`,
    `lease_expired` or `bad_return`; `message` the function's (or the server's) text."""

    def __init__(self, task_id, kind, message):
        super().__init__(message, code=kind)
        self.task_id = task_id
        self.kind = kind


class TaskCancelled(CrpcError):
    """The task was cancelled by its owner."""

    def __init__(self, task_id, message="cancelled"):
        super().__init__(message, code="cancelled")
        self.task_id = task_id


class NotFinished(CrpcError):
    """`result(wait=N)` ran out before the task finished; `state` is where it was."""

    def __init__(self, task_id, state):
        super().__init__(f"task {task_id} is still {state}", code="not_finished")
        self.task_id = task_id
        self.state = state


_BY_STATUS = {
    400: InvalidRequest,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
    503: Unavailable,
}


def from_response(status, body, retry_after=None):
    """The exception for an error response: its JSON error body, or the raw text."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message", "")) or f"HTTP {status}"
        code = str(error.get("code", "error"))
        details = error.get("details")
    else:
        message, code, details = f"HTTP {status}: {str(body)[:200]}", "http_error", None
    if status == 429:
        return RateLimited(message, status=status, code=code, details=details, retry_after=retry_after)
    cls = _BY_STATUS.get(status, ServerError)
    return cls(message, status=status, code=code, details=details)
