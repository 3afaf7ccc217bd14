"""Which kernel family runs: chosen once from the compilation target's SIMD features.

``avx512``
    x86 with AVX-512F/BW: float tiles of 16-float registers; int8 by ``vpdpbusd`` where AVX-512
    VNNI exists, else ``vpmaddwd`` on 512-bit registers.
``avx2``
    x86 with AVX2 + FMA: float tiles of 8-float registers; int8 by ``vpmaddwd``.
``portable``
    Plain loops LLVM vectorises for whatever CPU (ARM, old x86): always correct, slower.

The choice follows the CPU Numba compiles for (``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``,
see :mod:`colprune.kernels._llvm`). ``COLPRUNE_KERNELS=portable|avx2|avx512`` (read once) or
:func:`set_backend` overrides it, to a family the target supports.

Threads and fork
    Numba's default threading layer on Linux without the ``tbb`` package is GNU OpenMP, whose
    pool does not survive ``fork()``: a forked child that runs a kernel is killed ("fork() called
    from a process already using GNU OpenMP"), and a fork ``multiprocessing.Pool`` hangs. So,
    unless ``NUMBA_THREADING_LAYER`` is set, this module asks for ``forksafe`` before Numba
    starts its threads: ``tbb`` when installed (fork- and thread-safe), else ``workqueue``
    (fork-safe, but two threads launching kernels at once abort the process). Every kernel
    launch therefore holds one process-wide lock (:func:`launching`; the kernels use every core
    anyway), a fork waits for the launch in progress, and a forked child runs torch on one
    thread (torch's own GNU OpenMP pool hangs in a child otherwise; see :func:`threading_info`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _choose_threading_layer() -> None:
    # before Numba reads its configuration (at import, and again whenever a NUMBA_ variable changes)
    if "NUMBA_THREADING_LAYER" in os.environ:
        return  # the user's choice stands
    os.environ["NUMBA_THREADING_LAYER"] = "forksafe"
    if "numba" in sys.modules:  # imported before colprune: read the variable now, not at the next compile
        from numba.core import config

        config.reload_config()


_choose_threading_layer()

from ._llvm import has_native_half, has_vnni, is_aarch64, is_x86, target_cpu, target_features  # noqa: E402

__all__ = ["BACKENDS", "available_backends", "backend", "backend_info", "set_backend", "use_backend", "launching",
           "threading_info"]

BACKENDS = ("avx512", "avx2", "portable")
_lock = threading.Lock()
_chosen: str | None = None


def available_backends() -> tuple[str, ...]:
    """Kernel families the compilation target can run, fastest first."""
    f = target_features()
    out = []
    if is_x86() and {"avx512f", "avx512bw", "fma"} <= f:
        out.append("avx512")
    if is_x86() and {"avx2", "fma"} <= f:
        out.append("avx2")
    out.append("portable")
    return tuple(out)


def _check(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose from {BACKENDS} or 'auto'")
    if name not in available_backends():
        raise ValueError(f"kernel backend {name!r} needs CPU features the target {target_cpu()!r} lacks; "
                         f"available: {available_backends()}")
    return name


def backend() -> str:
    """The kernel family in use (decided on first call)."""
    global _chosen
    if _chosen is None:
        with _lock:
            if _chosen is None:
                env = os.environ.get("COLPRUNE_KERNELS", "auto").strip().lower() or "auto"
                _chosen = available_backends()[0] if env == "auto" else _check(env)
    return _chosen


def set_backend(name: str = "auto") -> str:
    """Force a kernel family (``"auto"``: the fastest available). Returns the one now in use."""
    global _chosen
    with _lock:
        _chosen = available_backends()[0] if name == "auto" else _check(name)
    return _chosen


@contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Run a block with another kernel family (for tests and benches; not thread-safe)."""
    before = backend()
    set_backend(name)
    try:
        yield name
    finally:
        set_backend(before)


def int8_path(name: str | None = None) -> str:
    """The int8 kernel a family uses: ``vnni``, ``pmaddwd512``, ``pmaddwd256`` or ``portable``."""
    name = name or backend()
    if name == "avx512":
        return "vnni" if has_vnni() else "pmaddwd512"
    if name == "avx2":
        return "pmaddwd256"
    return "portable"


def backend_info() -> dict:
    """What runs here: target CPU, its SIMD features that matter, and each kernel's path."""
    name = backend()
    feats = target_features()
    shown = ("sse4.2", "popcnt", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512vnni",
             "avx512vpopcntdq")
    from numba.core import config

    return {
        "backend": name,
        "available": list(available_backends()),
        "target_cpu": target_cpu(),
        "retargeted": bool(config.CPU_NAME and config.CPU_NAME != "host"),
        "arch": "x86_64" if is_x86() else ("aarch64" if is_aarch64() else "other"),
        "features": [f for f in shown if f in feats] + (["neon"] if is_aarch64() else []),
        "float32": {"avx512": "fma tiles, 16-float registers", "avx2": "fma tiles, 8-float registers"}.get(
            name, "portable loop (LLVM-vectorised dot products)"),
        "float16": ("vcvtph2ps widening" if has_native_half() else "exact arithmetic widening") + " into the float32 path",
        "int8": int8_path(name),
        "binary": "vpopcntq" if "avx512vpopcntdq" in feats else ("LLVM ctpop (vectorised nibble lookup)"
                                                                 if "avx2" in feats else "popcnt per word"),
    }


# -- kernel launches: one at a time, and never across a fork -------------------------------------

_launch = threading.RLock()


@contextmanager
def launching() -> Iterator[None]:
    """Hold the process-wide kernel lock: Numba's ``workqueue`` layer aborts on concurrent launches."""
    with _launch:
        yield


def _before_fork() -> None:
    _launch.acquire()  # no kernel is mid-launch in the parent while it forks


def _after_fork_in_parent() -> None:
    _launch.release()


def _after_fork_in_child() -> None:
    global _launch
    _launch = threading.RLock()  # the parent's threads do not exist here
    torch = sys.modules.get("torch")
    if torch is not None:  # torch's GNU OpenMP pool hangs in a forked child: run its ops on this thread
        try:
            torch.set_num_threads(1)
        except Exception:  # noqa: BLE001 - a partly imported or stubbed torch: nothing to protect
            pass


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


def threading_info() -> dict:
    """Numba's threading layer (``None`` before the first parallel kernel runs), who chose it, and its threads."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = None
    requested = os.environ.get("NUMBA_THREADING_LAYER", "default")
    safe = layer in ("tbb", "workqueue") if layer else requested in ("forksafe", "safe", "tbb", "workqueue")
    return {"layer": layer, "requested": requested, "threads": numba.config.NUMBA_NUM_THREADS, "fork_safe": safe}
