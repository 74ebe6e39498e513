"""What the CPU can do, from the kernel's own list of its instruction-set flags (``/proc/cpuinfo``).

The runtimes' probes are not enough to tell *native* bf16: torch's
``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` also answers yes on AVX-512 CPUs without AVX512-BF16,
where oneDNN emulates bf16 (about the speed of fp32, features moved), so the flags decide on x86.
"""

from __future__ import annotations

import functools
import platform

#: x86 flags of native bf16 arithmetic (AVX512-BF16 dot products, AMX tiles).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset | None:
    """The ``flags`` of the first CPU in ``/proc/cpuinfo``; ``None`` where there is no such file (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            line = next((line for line in fh if line.startswith("flags")), None)
    except OSError:
        return None
    return None if line is None else frozenset(line.split(":", 1)[1].split())


def is_x86() -> bool:
    """Whether this is an x86 CPU (the only kind whose bf16 flags are read here)."""
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def x86_native_bf16() -> bool | None:
    """Whether an x86 CPU has native bf16 (:data:`BF16_FLAGS`); ``None`` on other CPUs or without the flags."""
    flags = cpu_flags()
    return None if flags is None or not is_x86() else bool(BF16_FLAGS & flags)
