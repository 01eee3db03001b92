"""The node's one compute thread: every torch computation (Race mining and checks, LLM inference) runs on it.

PyTorch's CPU kernels keep a pool of OpenMP workers per calling thread. Two threads that compute
make two pools; libgomp then sees more workers than cores and stops letting idle workers spin, and
token-by-token generation slowed from 2.1 s to 3.5 s per 64 tokens in a measurement with just a
tiny matrix product every 50 ms on a second thread. One thread for all of it keeps one hot pool,
and its queue is also how mining gives way to user requests (mining runs in short chunks).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def _set_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


class ComputeThread:
    """A single worker thread that runs submitted computations in order."""

    def __init__(self, threads: int | None = None) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="compute", initializer=_set_threads, initargs=(threads,))

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue a computation; its future resolves when it has run."""
        return self.pool.submit(fn, *args, **kwargs)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a computation on the compute thread and wait for its result."""
        return self.submit(fn, *args, **kwargs).result()
