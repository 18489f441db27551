#!/usr/bin/env python3
"""Compiles every kernels/*.cu the way cupy.RawModule will on a GPU: through NVRTC.

No GPU and no CuPy needed: ctypes over libnvrtc, which the ``nvidia-cuda-nvrtc-cu12``
(CUDA 12) and ``nvidia-cuda-nvrtc`` (CUDA 13) wheels ship. For each kernel file, each
libnvrtc and each target architecture it creates a program, adds the backend's name
expressions, compiles with the backend's options plus the ones CuPy adds, prints the
log, asks for every name expression's lowered (mangled) name and for the PTX (and the
cubin where CuPy asks NVRTC for one). One line per (file, CUDA version, target) says
PASS or FAIL; the exit status is 1 when anything failed.

The options and name expressions come from gradkit.backends.cuda.backend
(COMPILE_OPTIONS, name_expressions, kernel_names, kernel_source), never from here.

Usage:
    python ci/nvrtc_compile.py [NVRTC ...] [--target sm_80 ...] [--expect-major 12 ...]

NVRTC is a libnvrtc.so* file or a folder holding one (at any depth: a pip --target
folder works). Without one, the GRADKIT_NVRTC environment variable (paths joined by
os.pathsep) is used, else the wheels in this Python's site-packages.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # check this checkout's kernels, not an installed copy

from gradkit.backends.cuda import backend as cuda_backend  # noqa: E402

ENV_VAR = "GRADKIT_NVRTC"
# Where each wheel puts the library, relative to site-packages (or to a pip --target folder).
WHEEL_LIBRARIES = {
    "nvidia-cuda-nvrtc-cu12": "nvidia/cuda_nvrtc/lib/libnvrtc.so.12",
    "nvidia-cuda-nvrtc": "nvidia/cu13/lib/libnvrtc.so.13",
}
# Architectures both CUDA 12 and 13 NVRTC accept (13 dropped sm_50..sm_72).
# sm_XX: CuPy's default (a cubin, for a GPU NVRTC knows); compute_XX: PTX, which CuPy
# asks for under CUPY_COMPILE_WITH_PTX=1 or on a GPU newer than this NVRTC.
DEFAULT_TARGETS = ("sm_80", "sm_90", "compute_80", "compute_90")

# --- What CuPy adds -----------------------------------------------------------------
# Read in CuPy 14.2.0 (the `cupy` sdist on PyPI). RawModule(code=..., options=O,
# name_expressions=N) compiles on first use through:
#   cupy/_core/raw.pyx:549       _get_raw_module -> core.compile_with_cache(code, O,
#                                prepend_cupy_headers=False, ..., name_expressions=N)
#   cupy/_core/core.pyx:2637     compile_with_cache -> assemble_cupy_compiler_options(O)
#   cupy/_core/core.pyx:2582-83  '--std=c++17' appended unless an option contains '-std='
#                                or '--std=' (use_default_std, 2558-2563)
#   cupy/_core/core.pyx:2589     CCCL first: -I<cupy>/include/cupy/_cccl/{cub,thrust,
#                                libcudacxx} (_get_cccl_include_options, 2509-2513)
#   cupy/_core/core.pyx:2591     -I<cupy>/include (CuPy's headers)
#   cupy/_core/core.pyx:2597,2603 -I<CUDA headers> (cuda.pathfinder's 'cudart' headers)
#   cupy/cuda/compiler.py:667    _compile_with_cache_cuda: '-ftz=true'
#   cupy/cuda/compiler.py:673-74 '--device-debug', '--generate-line-info' only when
#                                CUPY_CUDA_COMPILE_WITH_DEBUG=1
#   cupy/cuda/compiler.py:360-61 _compile: '-arch=sm_XX' (cubin), or '-arch=compute_XX'
#                                (PTX) under CUPY_COMPILE_WITH_PTX=1 or when the GPU is
#                                newer than NVRTC's maximum (_get_arch_for_options_for_nvrtc,
#                                222-236; XX = min(GPU, max) from _get_arch, 209-218)
#   cupy/cuda/compiler.py:371    '--device-as-default-execution-space' (jitify off)
#   cupy/cuda/compiler.py:376-79 '--pch' only with CUPY_NVRTC_USE_PCH=1 and NVRTC >= 12.8
#   cupy/cuda/compiler.py:857-65 nvrtcAddNameExpression for each of N, nvrtcCompileProgram,
#                                nvrtcGetLoweredName for each, then getCUBIN or getPTX
# The -I folders only matter to an #include; gradkit's kernels include nothing, so the
# checker passes none (it has neither CuPy's nor CUDA's headers). A kernel that adds an
# #include fails here until the checker is given those headers: a false alarm, never a
# false pass.
CUPY_VERSION_READ = "14.2.0"


def cupy_nvrtc_options(backend_options: tuple[str, ...], target: str, *,
                       cupy_include: str | None = None,
                       cuda_include: str | None = None) -> tuple[str, ...]:
    """The options CuPy 14.2's RawModule gives NVRTC, in its order (env switches off).

    >>> cupy_nvrtc_options(("-std=c++14",), "sm_80")
    ('-std=c++14', '-ftz=true', '-arch=sm_80', '--device-as-default-execution-space')
    >>> cupy_nvrtc_options((), "compute_90")[0]
    '--std=c++17'
    """
    options = tuple(backend_options)
    if not any("-std=" in option for option in options):
        options += ("--std=c++17",)
    if cupy_include is not None:
        cccl = f"{cupy_include}/cupy/_cccl"
        options = (f"-I{cccl}/cub", f"-I{cccl}/thrust", f"-I{cccl}/libcudacxx") + options
        options += (f"-I{cupy_include}",)
    if cuda_include is not None:
        options += (f"-I{cuda_include}",)
    return options + ("-ftz=true", f"-arch={target}", "--device-as-default-execution-space")


# --- libnvrtc through ctypes ------------------------------------------------------------
class NvrtcNotFound(RuntimeError):
    pass


def _libraries_in(location: Path) -> list[Path]:
    if location.is_file():
        return [location]
    if location.is_dir():
        found = [p for p in location.rglob("libnvrtc.so*")
                 if ".alt." not in p.name and "builtins" not in p.name]
        unique: dict[Path, Path] = {}
        for path in sorted(found, key=lambda p: (len(p.name), str(p))):
            unique.setdefault(path.resolve(), path)  # libnvrtc.so -> .so.12 -> .so.12.9.86
        return sorted(unique.values())
    return []


def find_libraries(locations: list[str] | None = None) -> list[Path]:
    """libnvrtc files: from ``locations``, else GRADKIT_NVRTC, else the wheels on sys.path."""
    if not locations:
        locations = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    if locations:
        libraries = []
        for location in locations:
            found = _libraries_in(Path(location).expanduser())
            if not found:
                raise NvrtcNotFound(f"no libnvrtc.so* at {location}")
            libraries += found
        return libraries
    libraries = [Path(entry) / relative for entry in sys.path if entry
                 for relative in WHEEL_LIBRARIES.values() if (Path(entry) / relative).is_file()]
    if not libraries:
        raise NvrtcNotFound(
            f"{ENV_VAR} is not set and no NVRTC wheel ({', '.join(WHEEL_LIBRARIES)}) is in "
            f"this Python's site-packages; set {ENV_VAR} to libnvrtc.so or its folder")
    return list(dict.fromkeys(libraries))


class Nvrtc:
    """One libnvrtc, loaded with its builtins library."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The CUDA 13 wheel's libnvrtc has no RUNPATH, so it cannot dlopen the
        # libnvrtc-builtins beside it by itself: load that first, globally.
        for builtins in sorted(path.parent.glob("libnvrtc-builtins.so*")):
            if ".alt." not in builtins.name:
                ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(str(path))
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        program, size_p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)
        signatures = {
            "nvrtcVersion": [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)],
            "nvrtcCreateProgram": [ctypes.POINTER(program), ctypes.c_char_p, ctypes.c_char_p,
                                   ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p],
            "nvrtcDestroyProgram": [ctypes.POINTER(program)],
            "nvrtcAddNameExpression": [program, ctypes.c_char_p],
            "nvrtcCompileProgram": [program, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
            "nvrtcGetProgramLogSize": [program, size_p],
            "nvrtcGetProgramLog": [program, ctypes.c_char_p],
            "nvrtcGetLoweredName": [program, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)],
            "nvrtcGetPTXSize": [program, size_p],
            "nvrtcGetPTX": [program, ctypes.c_char_p],
            "nvrtcGetCUBINSize": [program, size_p],
            "nvrtcGetCUBIN": [program, ctypes.c_char_p],
        }
        for name, argtypes in signatures.items():
            getattr(lib, name).argtypes = argtypes
            getattr(lib, name).restype = ctypes.c_int
        self.lib = lib
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)

    def _check(self, result: int, call: str) -> None:
        if result != 0:
            raise NvrtcError(f"{call}: {self.lib.nvrtcGetErrorString(result).decode()}")

    def _bytes(self, program: ctypes.c_void_p, what: str) -> bytes:
        size = ctypes.c_size_t()
        self._check(getattr(self.lib, f"nvrtcGet{what}Size")(program, ctypes.byref(size)),
                    f"nvrtcGet{what}Size")
        buffer = ctypes.create_string_buffer(size.value)
        self._check(getattr(self.lib, f"nvrtcGet{what}")(program, buffer), f"nvrtcGet{what}")
        return buffer.raw[:size.value]

    def compile(self, source: str, filename: str, names: list[str],
                options: tuple[str, ...]) -> Compiled:
        """What RawModule's compile does, up to the binary (which CuPy then loads)."""
        program = ctypes.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(),
                                                filename.encode(), 0, None, None),
                    "nvrtcCreateProgram")
        try:
            for name in names:
                self._check(self.lib.nvrtcAddNameExpression(program, name.encode()),
                            f"nvrtcAddNameExpression({name})")
            encoded = [option.encode() for option in options]
            result = self.lib.nvrtcCompileProgram(
                program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
            compiled = Compiled(log=self._bytes(program, "ProgramLog").rstrip(b"\0").decode())
            if result != 0:
                compiled.error = self.lib.nvrtcGetErrorString(result).decode()
                return compiled
            for name in names:
                lowered = ctypes.c_char_p()
                status = self.lib.nvrtcGetLoweredName(program, name.encode(), ctypes.byref(lowered))
                if status != 0 or not lowered.value:
                    compiled.missing.append(name)
                else:
                    compiled.lowered[name] = lowered.value.decode()
            compiled.ptx = self._bytes(program, "PTX").rstrip(b"\0")
            if "-arch=sm_" in " ".join(options):
                compiled.cubin = self._bytes(program, "CUBIN")
            return compiled
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(program))


class NvrtcError(RuntimeError):
    pass


@dataclass
class Compiled:
    log: str
    error: str | None = None
    lowered: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    ptx: bytes = b""
    cubin: bytes | None = None


# --- the check ----------------------------------------------------------------------------
@dataclass
class Result:
    file: str
    cuda: str
    target: str
    ok: bool
    message: str
    log: str = ""

    def line(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        return f"{verdict} {self.file} CUDA {self.cuda} {self.target}: {self.message}"


def _first_error(log: str) -> str:
    for line in log.splitlines():
        if re.search(r"\berror\b", line):
            return line.strip()
    return log.strip().splitlines()[0] if log.strip() else "no log"


def _verdict(compiled: Compiled, names: list[str], target: str) -> tuple[bool, str]:
    if compiled.error:
        return False, f"{compiled.error}: {_first_error(compiled.log)}"
    if compiled.missing:
        return False, f"the module lacks the backend's name expressions {compiled.missing}"
    if not compiled.ptx:
        return False, "nvrtcGetPTX returned nothing"
    if target.startswith("sm_") and not compiled.cubin:
        return False, "nvrtcGetCUBIN returned nothing (CuPy loads the cubin for sm_XX)"
    cubin = f", cubin {len(compiled.cubin)} B" if compiled.cubin else ""
    return True, f"{len(names)} name expressions lowered, PTX {len(compiled.ptx)} B{cubin}"


def check(libraries: list[Path], targets: tuple[str, ...] = DEFAULT_TARGETS) -> list[Result]:
    """Every kernel file x every libnvrtc x every target, compiled as RawModule will."""
    results: list[Result] = []
    compilers = [Nvrtc(path) for path in libraries]
    files = sorted(set(cuda_backend.kernel_names()) | set(cuda_backend.KERNELS_BY_SOURCE))
    for file in files:
        if file not in cuda_backend.KERNELS_BY_SOURCE:
            results.append(Result(file, "-", "-", False, "not in cuda_backend.KERNELS_BY_SOURCE, "
                                  "so the backend never compiles it: register or delete it"))
            continue
        try:
            source = cuda_backend.kernel_source(file)
        except FileNotFoundError as exc:
            results.append(Result(file, "-", "-", False, str(exc)))
            continue
        names = cuda_backend.name_expressions(file)
        for nvrtc in compilers:
            cuda = "%d.%d" % nvrtc.version
            for target in targets:
                options = cupy_nvrtc_options(cuda_backend.COMPILE_OPTIONS, target)
                compiled = nvrtc.compile(source, file, names, options)
                ok, message = _verdict(compiled, names, target)
                results.append(Result(file, cuda, target, ok, message, compiled.log.strip()))
    return results


def report(results: list[Result], libraries: list[Path]) -> str:
    lines = [f"NVRTC: {path}" for path in libraries]
    options = cupy_nvrtc_options(cuda_backend.COMPILE_OPTIONS, "<target>")
    lines.append(f"options: {' '.join(options)}  (backend's COMPILE_OPTIONS + CuPy "
                 f"{CUPY_VERSION_READ}'s)")
    for result in results:
        if result.log:
            lines.append(f"--- log: {result.file} CUDA {result.cuda} {result.target}\n{result.log}")
    lines += [result.line() for result in results]
    failed = sum(not result.ok for result in results)
    lines.append(f"nvrtc_compile: {len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("nvrtc", nargs="*", help="libnvrtc.so* or a folder holding one")
    parser.add_argument("--target", action="append", default=None,
                        help=f"sm_XX or compute_XX (default: {' '.join(DEFAULT_TARGETS)})")
    parser.add_argument("--expect-major", action="append", type=int, default=[],
                        help="fail unless a libnvrtc of this CUDA major was checked")
    args = parser.parse_args(argv)
    try:
        libraries = find_libraries(args.nvrtc)
        results = check(libraries, tuple(args.target or DEFAULT_TARGETS))
    except (NvrtcNotFound, NvrtcError, OSError) as exc:
        print(f"nvrtc_compile: {exc}", file=sys.stderr)
        return 1
    print(report(results, libraries))
    majors = {int(r.cuda.split(".")[0]) for r in results if r.cuda != "-"}
    missing = sorted(set(args.expect_major) - majors)
    if missing:
        print(f"nvrtc_compile: no libnvrtc of CUDA major {missing} was checked", file=sys.stderr)
        return 1
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
