"""Which BLAS NumPy runs on, with which kernels and threads, and whether it is the best
this CPU supports.

Matmul is most of a medium or large MLP step, so every timing depends on the BLAS:
`gradkit info` and `gradkit bench` report it, and the benchmark JSON records it. An
OpenBLAS forced to older kernels than the CPU has (``OPENBLAS_CORETYPE=Haswell`` on an
AVX-512 CPU, set on some machines because old OpenBLAS builds crashed there) can cost a
large step a third of its speed; the report says so and how to fix it.

The BLAS is found with threadpoolctl where it is installed (the ``cli`` and ``bench``
extras bring it), else nothing is reported.

>>> from gradkit.benchmarks.blas import describe
>>> isinstance(describe(), list)
True
"""
from __future__ import annotations

import os
from typing import Any

# OpenBLAS's x86 kernel families that use at most AVX2: slower than an AVX-512 CPU allows.
PRE_AVX512_KERNELS = frozenset({"prescott", "core2", "penryn", "dunnington", "nehalem",
                                "sandybridge", "haswell", "zen", "atom", "barcelona",
                                "bulldozer", "piledriver", "steamroller", "excavator"})


def blas_libraries() -> list[dict[str, Any]]:
    """threadpoolctl's record of each BLAS loaded in this process (name, version,
    kernel architecture, threads); empty without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    import numpy  # noqa: F401  (loads NumPy's BLAS, so threadpoolctl sees it)
    return [entry for entry in threadpool_info() if entry.get("user_api") == "blas"]


def cpu_has_avx512() -> bool:
    """Whether this CPU runs AVX-512 (NumPy's own CPU detection, else /proc/cpuinfo)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
        return bool(features.get("AVX512F"))
    except ImportError:
        try:
            with open("/proc/cpuinfo") as cpuinfo:
                return " avx512f " in f" {cpuinfo.read()} "
        except OSError:
            return False


def warnings_for(libraries: list[dict[str, Any]], avx512: bool,
                 environ: Any = os.environ) -> list[str]:
    """What is slower than it need be, with the fix.

    >>> warnings_for([{"internal_api": "openblas", "architecture": "Haswell"}], True,
    ...              {"OPENBLAS_CORETYPE": "Haswell"})[0].split(";")[0]
    'OpenBLAS runs its Haswell kernels on a CPU with AVX-512 (OPENBLAS_CORETYPE=Haswell is set)'
    """
    found = []
    for library in libraries:
        kernels = str(library.get("architecture") or "")
        if library.get("internal_api") == "openblas" and avx512 and \
                kernels.lower() in PRE_AVX512_KERNELS:
            forced = environ.get("OPENBLAS_CORETYPE")
            why = f" (OPENBLAS_CORETYPE={forced} is set)" if forced else ""
            found.append(f"OpenBLAS runs its {kernels} kernels on a CPU with AVX-512{why}; "
                         "matmul runs slower than this CPU allows: unset OPENBLAS_CORETYPE "
                         "(and OPENBLAS_L2_SIZE) unless this OpenBLAS build crashes without it")
    return found


def describe() -> list[str]:
    """One line per BLAS (library, version, kernels, threads), then any warnings."""
    libraries = blas_libraries()
    lines = [f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture')} "
             f"kernels, {lib.get('num_threads')} threads, {lib.get('threading_layer')})"
             for lib in libraries]
    return lines + [f"warning: {w}" for w in warnings_for(libraries, cpu_has_avx512())]


def record() -> dict[str, Any]:
    """What a benchmark result keeps of the BLAS and the CPU."""
    libraries = blas_libraries()
    return {"blas": [{key: lib.get(key) for key in ("internal_api", "version", "architecture",
                                                    "num_threads", "threading_layer")}
                     for lib in libraries],
            "cpu_avx512": cpu_has_avx512(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "warnings": warnings_for(libraries, cpu_has_avx512())}
