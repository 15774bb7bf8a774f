"""crpc_worker: turn decorated Python functions into a crpc native package.

    import crpc_worker

    @crpc_worker.task
    def count_words(text):
        crpc_worker.progress(50)
        return len(text.split())

    if __name__ == "__main__":
        crpc_worker.main()

The processor starts the program once per slot and speaks JSON lines on stdin/stdout:
host -> child  {"op":"init","config":{}} | {"op":"run","id","function","args","kwargs"}
               | {"op":"update","payload"}
child -> host  {"op":"ready"} | {"op":"progress","id","pct"} | {"op":"log","level","message"}
               | {"op":"result","id","ok":VALUE} | {"op":"error","id","kind","message"}
`print()` inside a task goes to stderr (the processor's log), never into the protocol.
Raise crpc_worker.Retryable to ask the server for another attempt; any other exception is fatal.

Files: an argument `{"$file": "sha256:…"}` arrives with a `path` to a read-only local copy
(`open(arg["path"])`). To return a file, write it at `output_file(name).path` and return the
`output_file` (anywhere in the answer): the processor uploads it and the answer holds
`{"$file": "sha256:…", "name": name, "size": n}`, downloadable with `crpc get`.

GPUs: `gpus()` lists the slot's GPUs (NVML indices; CUDA libraries see only those).
"""

import json
import os
import sys
import traceback

__all__ = ["task", "on_init", "on_update", "progress", "log", "output_file", "Retryable", "main"]
__version__ = "0.3.0"

_functions = {}
_hooks = {"init": None, "update": None}
_current = {"id": None, "output_dir": None}
_out = sys.stdout


class Retryable(Exception):
    """Raise to fail this attempt and let the server retry the task."""


def task(fn=None, *, name=None):
    """Registers a function under its own name (or `name`)."""

    def register(f):
        _functions[name or f.__name__] = f
        return f

    return register(fn) if fn is not None else register


def on_init(fn):
    """Registers fn(config: dict), called once when the processor starts this program."""
    _hooks["init"] = fn
    return fn


def on_update(fn):
    """Registers fn(payload), called when the server broadcasts an update."""
    _hooks["update"] = fn
    return fn


def _send(msg):
    _out.write(json.dumps(msg, separators=(",", ":")) + "\n")
    _out.flush()


def progress(pct):
    """Reports progress of the running task, 0-100."""
    if _current["id"] is not None:
        _send({"op": "progress", "id": _current["id"], "pct": float(pct)})


class OutputFile(dict):
    """A file the running task returns: write it at `.path`, return this value."""

    def __init__(self, name, path):
        super().__init__({"$output": name})
        self.path = path


def output_file(name):
    """An output file of the running task: `name` is a path relative to the task's output
    directory (subdirectories are made); write the file at `.path`, then return the value."""
    out = _current["output_dir"]
    if out is None:
        raise RuntimeError("output_file() is for the running task")
    if os.path.isabs(name) or ".." in name.split("/") or not name:
        raise ValueError(f"output file name {name!r} must be a relative path without ..")
    path = os.path.join(out, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return OutputFile(name, path)


def gpus():
    """The GPUs of the slot this task runs on, as NVML indices (from CUDA_VISIBLE_DEVICES, which
    the processor sets per slot); [] on a CPU slot."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return [int(part) for part in value.split(",") if part.strip().isdigit()]


def log(message, level="info"):
    """A log line in the processor's log."""
    _send({"op": "log", "level": level, "message": str(message)})


def _run(msg):
    tid = msg.get("id")
    fn = _functions.get(msg.get("function"))
    if fn is None:
        known = ", ".join(sorted(_functions)) or "none"
        return {"op": "error", "id": tid, "kind": "fatal",
                "message": f"no function `{msg.get('function')}` here (known: {known})"}
    _current["id"] = tid
    _current["output_dir"] = msg.get("output_dir")
    try:
        value = fn(*msg.get("args", []), **msg.get("kwargs", {}))
        json.dumps(value)
        return {"op": "result", "id": tid, "ok": value}
    except Retryable as e:
        return {"op": "error", "id": tid, "kind": "retryable", "message": str(e)}
    except Exception as e:  # noqa: BLE001 - every failure goes back to the task's owner
        traceback.print_exc(file=sys.stderr)
        return {"op": "error", "id": tid, "kind": "fatal", "message": f"{type(e).__name__}: {e}"}
    finally:
        _current["id"] = None
        _current["output_dir"] = None


def main():
    """Serves the JSON-lines protocol until stdin closes."""
    global _out
    _out = sys.stdout
    sys.stdout = sys.stderr  # print() in user code must not corrupt the protocol
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError as e:
            log(f"ignored a line that is not JSON: {e}", "warn")
            continue
        op = msg.get("op")
        if op == "init":
            try:
                if _hooks["init"]:
                    _hooks["init"](msg.get("config") or {})
                _send({"op": "ready"})
            except Exception as e:  # noqa: BLE001
                _send({"op": "error", "id": None, "kind": "fatal", "message": f"init failed: {e}"})
                return 1
        elif op == "run":
            _send(_run(msg))
        elif op == "update":
            if _hooks["update"]:
                try:
                    _hooks["update"](msg.get("payload"))
                except Exception as e:  # noqa: BLE001
                    log(f"update hook failed: {e}", "error")
        else:
            log(f"unknown op {op!r}", "warn")
    return 0
