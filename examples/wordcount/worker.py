"""wordcount: a native (Python) crpc package. Its setup step builds a venv and installs the
crpc_worker wheel shipped in wheels/ without touching the network."""

import collections
import csv
import os
import time
import tomllib

import crpc_worker

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "crpc.toml"), "rb") as f:
    VERSION = tomllib.load(f)["version"]


@crpc_worker.task
def count_words(text):
    """Number of whitespace-separated words."""
    return len(text.split())


@crpc_worker.task
def top_words(text, n=3):
    """The n most common words with their counts."""
    words = [w.strip(".,;:!?\"'()").lower() for w in text.split()]
    return collections.Counter(w for w in words if w).most_common(n)


@crpc_worker.task
def count_file(file):
    """Word counts of a text file (a `{"$file": …}` argument) as a CSV file, most common first:
    `word,count` lines."""
    counts = collections.Counter()
    with open(file["path"], encoding="utf-8", errors="replace") as f:
        for line in f:
            counts.update(w for w in (w.strip(".,;:!?\"'()").lower() for w in line.split()) if w)
    out = crpc_worker.output_file("counts.csv")
    with open(out.path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["word", "count"])
        writer.writerows(counts.most_common())
    return out


@crpc_worker.task
def version():
    """The package version that answered (two versions run side by side)."""
    return VERSION


@crpc_worker.task
def slow(seconds):
    """Sleeps, reporting progress every 10 %: cancel and timeout tests use it."""
    for i in range(10):
        time.sleep(seconds / 10)
        crpc_worker.progress((i + 1) * 10)
    return seconds


@crpc_worker.task
def pid():
    """The worker process id and its process group."""
    return {"pid": os.getpid(), "pgid": os.getpgid(0)}


if __name__ == "__main__":
    raise SystemExit(crpc_worker.main())
