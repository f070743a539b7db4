"""Thread policy for the numerical libraries: one home for "how many BLAS threads".

Geometry on meshes of a few thousand vertices is made of many small factorisations
and matrix products; OpenBLAS's thread hand-offs made those eigen-solves ~10x slower
with 2 threads on a busy 2-core machine. :func:`blas_threads` limits BLAS inside a
block (torch's own intra-op threads are untouched); :func:`single_threaded_children`
sets the environment that worker processes read when they start (N workers x N
threads would thrash).
"""

from __future__ import annotations

import contextlib
import os

from threadpoolctl import threadpool_limits

#: Environment variables BLAS / OpenMP libraries read at import time.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextlib.contextmanager
def blas_threads(n: int | None = 1):
    """Run the block with at most ``n`` BLAS threads (``None``: leave them alone)."""
    if n is None:
        yield
        return
    with threadpool_limits(limits=int(n), user_api="blas"):
        yield


@contextlib.contextmanager
def single_threaded_children():
    """Set :data:`THREAD_VARS` to 1 for processes started inside the block, then restore."""
    old = {k: os.environ.get(k) for k in THREAD_VARS}
    for k in THREAD_VARS:
        os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


__all__ = ["THREAD_VARS", "blas_threads", "single_threaded_children"]
