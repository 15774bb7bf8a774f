"""nativekit: a native crpc package that tries what a hostile package would. The processor's
tests use it to check the sandbox: a cleared environment, a read-only file system outside its
scratch dir (Landlock), and a process tree that dies whole on cancel."""

import os
import subprocess
import sys
import time

import crpc_worker

INIT = {}


@crpc_worker.on_init
def remember_init(config):
    """The manifest's [init] table, with the processor's --init keys over it."""
    INIT.update(config)


@crpc_worker.task
def init_config():
    """The init configuration this program started with."""
    return INIT


UPDATES = []


@crpc_worker.on_update
def remember_update(payload):
    """A broadcast (POST /admin/broadcast) reached this program."""
    UPDATES.append(payload)
    del UPDATES[:-100]


@crpc_worker.task
def updates():
    """The broadcast payloads this program received, oldest first."""
    return UPDATES


@crpc_worker.task
def gpus():
    """The slot's GPUs as crpc_worker sees them."""
    return crpc_worker.gpus()


@crpc_worker.task
def env():
    """The environment this program sees."""
    return dict(os.environ)


@crpc_worker.task
def read(path):
    """The first 200 characters of a file (an error if the sandbox refuses)."""
    with open(path) as f:
        return f.read(200)


@crpc_worker.task
def write(path, text):
    """Writes a file (an error if the sandbox refuses)."""
    with open(path, "w") as f:
        f.write(text)
    return True


@crpc_worker.task
def daemon():
    """Starts a detached `sleep` in its own session whose parent exits at once; its pid."""
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        p = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        os.write(w, str(p.pid).encode())
        os._exit(0)
    os.close(w)
    pid = int(os.read(r, 32))
    os.close(r)
    return pid


@crpc_worker.task
def slow(seconds):
    """Sleeps, reporting progress."""
    for i in range(10):
        time.sleep(seconds / 10)
        crpc_worker.progress((i + 1) * 10)
    return seconds


@crpc_worker.task
def spin(seconds):
    """Keeps one core at 100 % for `seconds` (a CPU-bound native task); the loop count."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


@crpc_worker.task
def claims_integer(value):
    """Declares an integer and returns whatever it is given: the processor must check."""
    return value


@crpc_worker.task
def flood(mb):
    """Writes `mb` MiB to stdout without a newline, then waits."""
    chunk = b"x" * (1 << 20)
    for _ in range(mb):
        sys.__stdout__.buffer.write(chunk)
    sys.__stdout__.buffer.flush()
    time.sleep(60)




@crpc_worker.task
def file_digest(file):
    """A task file (`{"$file": …}`, with the `path` the processor gave it): its sha256 and size,
    whether the program could write it, and how many files it could list beside it (None when
    refused)."""
    import hashlib

    h, size = hashlib.sha256(), 0
    with open(file["path"], "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    try:
        with open(file["path"], "ab"):
            writable = True
    except OSError:
        writable = False
    try:
        listed = len(os.listdir(os.path.dirname(file["path"])))
    except OSError:
        listed = None
    return {"sha256": h.hexdigest(), "size": size, "writable": writable, "listed": listed}


@crpc_worker.task
def hostile_output(kind):
    """An answer naming an output file the processor must refuse to upload: `escape` (../),
    `absolute`, `link` (a symbolic link to a system file), `dirlink` (through a linked
    directory), `missing`, `fifo` (not a regular file)."""
    out = crpc_worker.output_file("x")
    base = os.path.dirname(out.path)
    if kind == "escape":
        return {"$output": "../x"}
    if kind == "absolute":
        return {"$output": "/etc/hostname"}
    if kind == "link":
        os.symlink("/etc/hostname", out.path)
        return out
    if kind == "dirlink":
        os.symlink("/etc", os.path.join(base, "d"))
        return {"$output": "d/hostname"}
    if kind == "fifo":
        os.mkfifo(out.path)
        return out
    return {"$output": "missing"}


@crpc_worker.task
def as_file(sha256):
    """An answer naming a file by a hash it was given, as a hostile program would."""
    return {"$file": "sha256:" + sha256}


@crpc_worker.task
def copy_file(file, name):
    """Copies a task file to an output file `name`: the output's file value."""
    import shutil

    out = crpc_worker.output_file(name)
    shutil.copyfile(file["path"], out.path)
    return out


if __name__ == "__main__":
    raise SystemExit(crpc_worker.main())
