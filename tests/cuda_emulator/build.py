"""Compiling a module with g++ into a cached shared library.

The compiler is ``$GRADKIT_EMULATOR_CXX`` when set, else ``g++`` on PATH. Libraries are
cached under ``$GRADKIT_EMULATOR_CACHE_DIR`` when set, else
``$XDG_CACHE_HOME/gradkit/cuda_emulator`` (``~/.cache/...``), else a directory in the
system temp dir; the file name is a hash of everything that shapes the library (source,
options, name expressions, header, runtime, compiler version).

NVRTC options and what becomes of them:

* ``-D NAME[=VALUE]`` / ``--define-macro=...``, ``-U NAME`` / ``--undefine-macro=...``:
  passed to g++.
* ``-std=c++NN`` / ``--std=c++NN`` (also as two words): g++ ``-std=c++NN``. Without it,
  C++17, NVRTC's default.
* ``-I DIR`` / ``--include-path=DIR``: passed to g++ (host system headers stay out).
* everything else (``-arch``, ``--use_fast_math``, ``-lineinfo``, ``--fmad``, ``-G``...)
  is ignored: it changes code generation on a GPU, not what the emulator runs.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cuda_emulator.errors import EmulatorCompileError

HERE = Path(__file__).resolve().parent
HEADER_FILES = ("cuda_emulator.h", "cuda_emulator_abi.h")
RUNTIME_FILE = "runtime.cpp"
BUILD_VERSION = "1"  # bump when the wrapper or the flags change

# Flags for every compile: position-independent, only the launchers exported, no
# optimisation that would bet on strict aliasing (kernels cast shared bytes freely),
# no contraction into FMAs that depend on the host CPU.
_COMMON_FLAGS = ("-O1", "-fPIC", "-fvisibility=hidden", "-fno-strict-aliasing",
                 "-ffp-contract=off", "-pthread")
# Host headers out of view, as under NVRTC.
_KERNEL_FLAGS = ("-nostdinc", "-nostdinc++")

# NVRTC writes these names without a declaration of its own only where a header
# provided them: say so next to g++'s "was not declared" message.
HOST_ONLY_NAMES = ("INFINITY", "NAN", "HUGE_VAL", "HUGE_VALF", "M_PI", "printf", "std::")


def compiler() -> str | None:
    """The C++ compiler's path, or None."""
    chosen = os.environ.get("GRADKIT_EMULATOR_CXX")
    return shutil.which(chosen) if chosen else shutil.which("g++")


def compiler_available() -> str | None:
    """None when modules can be built here, else why not (starting "no C++ compiler")."""
    path = compiler()
    if path is None:
        wanted = os.environ.get("GRADKIT_EMULATOR_CXX", "g++")
        return (f"no C++ compiler: {wanted} is not on PATH (the CUDA emulator compiles "
                ".cu files with g++; set GRADKIT_EMULATOR_CXX to use another)")
    try:
        _compiler_version(path)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"no C++ compiler: {path} does not run ({exc})"
    return None


@functools.lru_cache(maxsize=None)
def _compiler_version(path: str) -> str:
    return subprocess.run([path, "--version"], capture_output=True, text=True,
                          check=True).stdout


def cache_dir() -> Path:
    """Where built libraries live (created on first use)."""
    chosen = os.environ.get("GRADKIT_EMULATOR_CACHE_DIR")
    if chosen:
        return _ensure(Path(chosen))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        return _ensure(Path(base) / "gradkit" / "cuda_emulator")
    except OSError:
        return _ensure(Path(tempfile.gettempdir()) / f"gradkit-cuda-emulator-{os.getuid()}")


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise OSError(f"{path} is not writable")
    return path


def nvrtc_options_to_gxx(options: tuple[str, ...]) -> list[str]:
    """g++ flags for NVRTC options: defines, undefines, include paths and -std kept."""
    flags, std = [], "c++17"
    words = list(options)
    while words:
        word = words.pop(0)
        for short, long, gxx in (("-D", "--define-macro", "-D"), ("-U", "--undefine-macro", "-U"),
                                 ("-I", "--include-path", "-I"), ("-std", "--std", "-std")):
            value = _option_value(word, words, short, long)
            if value is None:
                continue
            if gxx == "-std":
                std = value
            else:
                flags.append(gxx + value)
            break
    return [f"-std={std}"] + flags


def _option_value(word: str, rest: list[str], short: str, long: str) -> str | None:
    """The value of option `word` if it is `short`/`long` (glued, after '=', or next word)."""
    for name in (long, short):
        if word == name:
            return rest.pop(0) if rest else ""
        if word.startswith(name + "="):
            return word[len(name) + 1:]
        if name == short and name != "-std" and word.startswith(name) and len(word) > len(name):
            return word[len(name):]
    return None


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _support_text() -> str:
    return "".join((HERE / name).read_text() for name in HEADER_FILES + (RUNTIME_FILE,))


def _run(command: list[str], what: str) -> None:
    env = dict(os.environ, LC_ALL="C", LANG="C")  # plain ASCII quotes in diagnostics
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise EmulatorCompileError(f"{what} failed:\n{_explain(result.stderr)}")


def _explain(diagnostics: str) -> str:
    """g++'s messages, plus a note where a host-only name is missing."""
    missing = [name for name in HOST_ONLY_NAMES
               if f"'{name}' was not declared" in diagnostics
               or (name == "std::" and "'std' has not been declared" in diagnostics)]
    if missing:
        diagnostics += ("\nnote: " + ", ".join(missing) + " come from host headers, which "
                        "NVRTC does not have either; use device intrinsics instead (e.g. "
                        "__int_as_float(0x7f800000) for INFINITY, "
                        "__longlong_as_double(0x7ff0000000000000LL) in double).")
    return diagnostics


def runtime_object() -> Path:
    """runtime.cpp compiled once per runtime version and compiler."""
    cxx = compiler()
    key = _digest(BUILD_VERSION, _support_text(), " ".join(_COMMON_FLAGS), cxx,
                  _compiler_version(cxx))
    target = cache_dir() / f"runtime-{key}.o"
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            built = Path(work) / "runtime.o"
            _run([cxx, "-std=c++17", *_COMMON_FLAGS, "-c", str(HERE / RUNTIME_FILE),
                  "-o", str(built)], "compiling the emulator runtime")
            os.replace(built, target)
    return target


def build_library(translation_unit: str, options: tuple[str, ...]) -> Path:
    """The shared library of one module, compiled unless already cached."""
    cxx = compiler()
    if cxx is None:
        raise EmulatorCompileError(compiler_available())
    flags = nvrtc_options_to_gxx(options)
    key = _digest(BUILD_VERSION, translation_unit, " ".join(flags + list(_COMMON_FLAGS)),
                  _support_text(), cxx, _compiler_version(cxx))
    target = cache_dir() / f"module-{key}.so"
    if target.exists():
        return target
    runtime = runtime_object()
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        source = Path(work) / "module.cpp"
        source.write_text(translation_unit)
        obj, built = Path(work) / "module.o", Path(work) / "module.so"
        _run([cxx, *flags, *_COMMON_FLAGS, *_KERNEL_FLAGS, f"-I{HERE}", "-c", str(source),
              "-o", str(obj)], "compiling the CUDA source for the emulator")
        _run([cxx, "-shared", "-pthread", str(obj), str(runtime), "-o", str(built), "-lm"],
             "linking the emulated module")
        os.replace(built, target)
    return target
