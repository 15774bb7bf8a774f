"""The crpc client: submit tasks, wait for answers, map over inputs, read the queue's estimate."""

import os
import re
import tempfile
import time

from ._http import Http
from .errors import CrpcError, InvalidRequest, NotFinished, TaskCancelled, TaskFailed

# The server caps a long-poll at 60 s (less with --max-user-wait); each request waits at most this.
LONG_POLL_S = 30.0
# Longest a file upload or download may take.
FILE_TIMEOUT_S = 3600.0
# Tasks per submit_batch request (the server's default cap is 10,000).
BATCH = 1000
TERMINAL = ("succeeded", "failed", "cancelled")
OPTIONS = ("version", "priority", "timeout_s", "max_attempts", "idempotency_key", "memoize",
           "ttl_s", "resources", "after", "not_before", "delay_s", "concurrency_key",
           "max_concurrent")


def ref(task, path=None):
    """An argument that is another task's answer (or the part the JSON pointer `path` names):
    the task waits until that one succeeded, and fails with `dependency_failed` if it did not.
    `task` is a `Task`, a task id, or in `map` inputs `"#N"` for input N of the same batch."""
    r = {"$ref": getattr(task, "id", task)}
    if path is not None:
        r["path"] = path
    return r


def config_path():
    """Where `crpc login` and `crpc dev` write: $CRPC_CONFIG, else $XDG_CONFIG_HOME/crpc/config.toml,
    else ~/.config/crpc/config.toml."""
    if os.environ.get("CRPC_CONFIG"):
        return os.environ["CRPC_CONFIG"]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "crpc", "config.toml")


def _read_config(path):
    try:
        with open(path, "rb") as f:
            text = f.read().decode()
    except OSError:
        return {}
    try:
        import tomllib  # Python 3.11+
        return tomllib.loads(text)
    except ImportError:
        # The file holds only `key = "string"` lines (crpc writes it).
        return dict(re.findall(r'^\s*([A-Za-z_]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$', text, re.M))


def split_function(spec, package=None):
    """`"package.function"` → (package, function); a bare name keeps `package`."""
    if package is None and "." in spec:
        package, spec = spec.split(".", 1)
    if not spec:
        raise InvalidRequest("name a function: 'package.function'", code="bad_function")
    return package, spec


def input_args(item):
    """One input of `map`, read like a `crpc map` line: a list is the positional arguments, an
    object with `args` and/or `kwargs` both, anything else the one argument."""
    if isinstance(item, (list, tuple)):
        return list(item), {}
    if isinstance(item, dict) and ("args" in item or "kwargs" in item):
        unknown = set(item) - {"args", "kwargs"}
        if unknown:
            raise InvalidRequest(f"unknown key {sorted(unknown)[0]!r} (an object input holds "
                                 "'args' and/or 'kwargs')", code="bad_input")
        args, kwargs = item.get("args", []), item.get("kwargs", {})
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
            raise InvalidRequest("'args' must be a list and 'kwargs' an object", code="bad_input")
        return list(args), dict(kwargs)
    return [item], {}


def _outcome(view):
    """The answer of a finished task view, or the exception it ended with."""
    state = view["state"]
    if state == "succeeded":
        return view.get("answer")
    err = view.get("error") or {}
    if state == "cancelled":
        return TaskCancelled(view["id"], err.get("message", "cancelled"))
    return TaskFailed(view["id"], err.get("kind", "fatal"), err.get("message", "failed"))


def _answer(view):
    out = _outcome(view)
    if isinstance(out, CrpcError):
        raise out
    return out


class Task:
    """A submitted task: its `id`, and `result()` to wait for its answer."""

    def __init__(self, client, task_id, state):
        self.client, self.id, self.state = client, task_id, state

    def result(self, wait=None):
        return self.client.result(self.id, wait=wait)

    def cancel(self):
        return self.client.cancel(self.id)

    def __repr__(self):
        return f"Task({self.id!r})"


class Client:
    """A connection to a crpc task server.

    `Client()` reads the server and token from `CRPC_SERVER` / `CRPC_TOKEN`, else from the file
    `crpc login` and `crpc dev` write. `timeout` bounds each HTTP request (long-polls add their
    wait); `ca_cert` is a PEM file of a private CA for https servers.
    """

    def __init__(self, server=None, token=None, *, timeout=30.0, ca_cert=None):
        file = _read_config(config_path()) if server is None or token is None else {}
        server = server or os.environ.get("CRPC_SERVER") or file.get("server") or "http://127.0.0.1:7700"
        token = token or os.environ.get("CRPC_TOKEN") or file.get("token")
        ca_cert = ca_cert or os.environ.get("CRPC_CA_CERT")
        self.server = server
        self._http = Http(server, token, timeout, ca_cert)

    # -- one task ---------------------------------------------------------------------------

    def submit(self, function, *args, kwargs=None, package=None, **options):
        """Submits `function(*args, **kwargs)`; `function` is `"package.function"`. Options:
        version (a semver requirement), priority, timeout_s, max_attempts, idempotency_key,
        memoize, ttl_s, resources ({"gpus", "memory_mb", "datasets"}), after, not_before,
        delay_s, concurrency_key with max_concurrent (your tasks with that key run at most
        max_concurrent at once). Returns a `Task`."""
        body = self._spec(function, list(args), kwargs or {}, package, options)
        r = self._http.request("POST", "/user/submit_task", body)
        return Task(self, r["id"], r.get("state"))

    def result(self, task_id, wait=None):
        """The task's answer. `wait=None` waits until it finishes, `wait=N` at most N seconds,
        `wait=0` not at all; raises `NotFinished` when it has not finished by then,
        `TaskFailed` or `TaskCancelled` when it ended without an answer."""
        task_id = getattr(task_id, "id", task_id)
        deadline = None if wait is None else time.monotonic() + max(0.0, float(wait))
        while True:
            left = LONG_POLL_S if deadline is None else min(LONG_POLL_S, deadline - time.monotonic())
            view = self._answer_view(task_id, max(0.0, left))
            if view["state"] in TERMINAL:
                return _answer(view)
            if deadline is not None and time.monotonic() >= deadline:
                raise NotFinished(task_id, view["state"])

    def status(self, task_id):
        """The task as it is now: `{"state", "answer"?, "error"?, "progress"?, "attempt"}`."""
        return self._answer_view(getattr(task_id, "id", task_id), 0)

    def cancel(self, task_id):
        """Cancels a queued or running task; raises `Conflict` when it already finished."""
        task_id = getattr(task_id, "id", task_id)
        return self._http.request("POST", f"/user/tasks/{task_id}/cancel", {})["state"]

    def cancel_batch(self, batch_id):
        """Cancels every task of a batch that has not finished (finished results stay); how
        many it cancelled."""
        return self._http.request("POST", f"/user/batches/{batch_id}/cancel", {})["cancelled"]

    def estimate(self, task_id=None):
        """The queue's estimate (or the part ahead of one task): `time` (core-seconds),
        `eta_s` with `eta_p10_s`/`eta_p90_s`, `backlog` per class, `per_function`."""
        query = {"task_id": getattr(task_id, "id", task_id)} if task_id else None
        return self._http.request("GET", "/user/estimate_time_left", query=query)

    # -- files ------------------------------------------------------------------------------

    def put(self, path):
        """Uploads the file at `path` (streamed); the value to pass as a task argument,
        `{"$file": "sha256:…"}`. The server keeps one copy per owner of the same bytes."""
        return self._http.put_file("/files", os.fspath(path), timeout=FILE_TIMEOUT_S)["file"]

    def get(self, file, dest):
        """Downloads a file (a `{"$file": …}` value, as answers hold them, or `"sha256:…"`)
        to `dest`: a path, or an existing directory (the file keeps its `name` there). The
        sha256 is checked; a mismatch or an error leaves nothing at `dest`. The path written."""
        name = file.get("$file") if isinstance(file, dict) else file
        sha = str(name).removeprefix("sha256:").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError(f"{file!r} is not a file value or sha256")
        dest = os.fspath(dest)
        if os.path.isdir(dest):
            given = file.get("name") if isinstance(file, dict) else None
            base = os.path.basename(given or "") if isinstance(given, str) else ""
            dest = os.path.join(dest, base if base not in ("", ".", "..") else sha)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dest)), prefix=".crpc-")
        try:
            with os.fdopen(fd, "wb") as out:
                got = self._http.download(f"/files/{sha}", out, timeout=FILE_TIMEOUT_S)
            if got != sha:
                raise CrpcError(f"the download's sha256 is {got}, not {sha}", code="corrupt")
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(tmp)
            raise
        return dest

    # -- many tasks -------------------------------------------------------------------------

    def map(self, function, inputs, *, return_exceptions=False, **options):
        """Runs `function` over `inputs`, answers in input order (like `Pool.map`). An input is
        read like a `crpc map` line: a list is the positional arguments, a dict with
        `args`/`kwargs` both, anything else the one argument. The first failure raises (its
        `TaskFailed` or `TaskCancelled`), unless `return_exceptions=True` puts it in its place."""
        out = {}
        for index, outcome in self._finished(function, inputs, options):
            if isinstance(outcome, CrpcError) and not return_exceptions:
                raise outcome
            out[index] = outcome
        return [out[i] for i in range(len(out))]

    def imap_unordered(self, function, inputs, *, return_exceptions=False, **options):
        """Like `map`, but yields each answer as soon as its task finishes (completion order)."""
        for _, outcome in self._finished(function, inputs, options):
            if isinstance(outcome, CrpcError) and not return_exceptions:
                raise outcome
            yield outcome

    # -- internals --------------------------------------------------------------------------

    def _spec(self, function, args, kwargs, package, options):
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise TypeError(f"unknown option {sorted(unknown)[0]!r} (options: {', '.join(OPTIONS)})")
        package, function = split_function(function, package)
        body = {"function": function, "args": args, "kwargs": kwargs}
        if package:
            body["package"] = package
        body.update({k: v for k, v in options.items() if v is not None})
        if "after" in body:
            body["after"] = [getattr(t, "id", t) for t in body["after"]]
        return body

    def _answer_view(self, task_id, wait):
        return self._http.request("GET", f"/user/request_answer/{task_id}",
                                  query={"wait": f"{wait:.3f}"} if wait > 0 else None,
                                  timeout=self._http.timeout + wait)

    def _finished(self, function, inputs, options):
        """Submits `inputs` in batches, then yields (input index, answer or exception) as the
        tasks finish. Stopping early (an exception, a `break`) cancels what is left."""
        batches = []
        package, function = split_function(function, options.pop("package", None))
        items = list(inputs)
        for start in range(0, len(items), BATCH):
            tasks = []
            for item in items[start:start + BATCH]:
                args, kwargs = input_args(item)
                tasks.append(self._spec(function, args, kwargs, package, options))
            r = self._http.request("POST", "/user/submit_batch", {"tasks": tasks})
            batches.append({"id": r["batch_id"], "ids": r["ids"], "offset": start, "after": 0, "done": False})
        seen = set()
        try:
            while not all(b["done"] for b in batches):
                for b in batches:
                    if b["done"]:
                        continue
                    page = self._http.request(
                        "GET", f"/user/batches/{b['id']}/results",
                        query={"after": b["after"], "limit": 1000, "wait": LONG_POLL_S / max(1, len(batches))},
                        timeout=self._http.timeout + LONG_POLL_S)
                    b["after"], b["done"] = page["next"], page["done"]
                    for r in page["results"]:
                        seen.add(r["id"])
                        yield b["offset"] + r["index"], _outcome(r)
        finally:
            self._cancel_unseen(batches, seen)

    def _cancel_unseen(self, batches, seen):
        """Cancels what has not finished of every batch not done: one request per batch."""
        for b in batches:
            if not b["done"]:
                try:
                    self.cancel_batch(b["id"])
                except CrpcError:
                    pass  # gone meanwhile
