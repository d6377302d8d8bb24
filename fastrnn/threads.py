"""Thread count of fastrnn's compiled CPU engine, and of NumPy's BLAS next to it.

The engine's parallel region and the layer's BLAS calls never run at the same time, so both
use the same count: ``set_num_threads(n)`` sets the engine's threads and limits the BLAS
thread pools to n (through threadpoolctl), so that neither keeps more busy threads than the
cores it was given. The default is ``OMP_NUM_THREADS`` when set, else the CPUs this process
may run on.
"""
import os

_num_threads = None


def _default():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"OMP_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n >= 1:
            return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads():
    """Threads the engine uses for one recurrence."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default()
    return _num_threads


def set_num_threads(n):
    """Use ``n`` threads in the engine and at most ``n`` in NumPy's BLAS; ``None`` restores
    the default for the engine (BLAS limits set earlier stay)."""
    global _num_threads
    if n is None:
        _num_threads = None
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n, user_api="blas")
