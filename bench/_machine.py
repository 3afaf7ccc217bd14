"""Where a bench ran, and the median time of a call: shared by the scripts in ``bench/``.

Each script is run as ``python bench/NAME.py``, so this module is found beside it.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import subprocess
import time
from typing import Callable

__all__ = ["cpu_model", "simd_class", "cpu_line", "median_seconds"]


@functools.lru_cache(maxsize=1)
def _lscpu() -> str:
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):  # not Linux, or no util-linux
        return ""


def cpu_model() -> str:
    """lscpu's "Model name", else the platform's processor or machine name."""
    for line in _lscpu().splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def simd_class() -> str:
    """``"AVX-512"``, ``"AVX2"`` or ``"other"``, from lscpu's flags."""
    flags = _lscpu()
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "other"


def cpu_line() -> str:
    """``"MODEL (SIMD, N cores)"``: what every speed figure names."""
    return f"{cpu_model()} ({simd_class()}, {os.cpu_count()} cores)"


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
