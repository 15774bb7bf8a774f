"""crpc: run your functions on many machines.

    import crpc

    client = crpc.Client()                      # CRPC_SERVER / CRPC_TOKEN, or `crpc login`'s file
    task = client.submit("monte-carlo-pi.estimate_pi", 100_000)
    print(task.result())                        # waits; raises crpc.TaskFailed if it failed
    print(client.map("wordcount.count_words", ["a b", "c d e"]))   # [2, 3], input order
"""

from .client import Client, Task, input_args, ref, split_function
from .errors import (
    AuthError,
    Conflict,
    CrpcError,
    InvalidRequest,
    NotFinished,
    NotFound,
    RateLimited,
    ServerError,
    TaskCancelled,
    TaskFailed,
    Unavailable,
    Unreachable,
)

__version__ = "0.1.0"
__all__ = [
    "Client", "Task", "input_args", "ref", "split_function",
    "CrpcError", "AuthError", "Conflict", "InvalidRequest", "NotFinished", "NotFound",
    "RateLimited", "ServerError", "TaskCancelled", "TaskFailed", "Unavailable", "Unreachable",
]
