"""Turning a .cu source into one host C++ translation unit for g++.

Two textual rewrites happen before compiling; both keep every line on its line, so
compiler messages point at the .cu file's own line numbers:

* ``__shared__ T name[N];`` becomes ``static T name[N];`` followed, inside a function,
  by a call that counts it against the 48 KiB limit and fills it with 0xFF bytes the
  first time a thread of each block passes it (at file scope: registered at load and
  filled at every block start). An initializer is refused, as nvcc refuses it.
* ``extern __shared__ T name[];`` becomes ``T* const name = <the launch's dynamic shared
  memory>`` inside a function, or a macro ``name`` at file scope.

Declarations inside comments, strings and preprocessor lines are left alone (one inside
a ``#define`` still compiles, as a plain ``static``, neither counted nor filled).

After the source comes a generated wrapper: for each name expression, an ``extern "C"``
launcher ``cuda_emu_launch_<i>`` and ``cuda_emu_signature_<i>``, the kernel's parameter
types as C strings, both deduced from the kernel's function pointer.
"""
from __future__ import annotations

import re

from cuda_emulator.errors import EmulatorCompileError

SOURCE_NAME = "module.cu"

_SHARED = re.compile(r"\b(?P<extern>extern\s+)?__shared__\b(?P<body>[^;{}]*);")
_ALIGN = re.compile(r"__align__\s*\([^)]*\)")
_EXTERN_C_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?'
                              r"void\s+(\w+)\s*\(")


def translation_unit(source: str, name_expressions: list[str]) -> str:
    """The whole file g++ compiles: the header, the rewritten source, the wrapper."""
    return ('#include "cuda_emulator.h"\n'
            f'#line 1 "{SOURCE_NAME}"\n'
            + rewrite_shared(source)
            + "\n" + wrapper(name_expressions))


def extern_c_kernels(source: str) -> list[str]:
    """Names of ``extern "C" __global__`` kernels, launchable without name expressions."""
    code = code_only(source)  # "C" is blanked there: match the source, keep code only
    return [m.group(1) for m in _EXTERN_C_KERNEL.finditer(source) if code[m.start()] == "e"]


# ---- finding code ---------------------------------------------------------------------

def code_only(text: str) -> str:
    """``text`` with comments, string/char literals and preprocessor lines blanked out.

    Same length, newlines kept, so positions and line numbers carry over.
    """
    out = list(text)
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = _line_end(text, i)
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            end = n if close < 0 else close + 2
        elif c in "\"'":
            end, at_line_start = _literal_end(text, i), False
        elif c == "#" and at_line_start:
            end = _directive_end(text, i)
        else:
            at_line_start = c == "\n" or (at_line_start and c.isspace())
            i += 1
            continue
        for k in range(i, end):
            if out[k] != "\n":
                out[k] = " "
        i = end
    return "".join(out)


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _literal_end(text: str, i: int) -> int:
    quote, k = text[i], i + 1
    while k < len(text) and text[k] != quote and text[k] != "\n":
        k += 2 if text[k] == "\\" else 1
    return min(k + 1, len(text))


def _directive_end(text: str, i: int) -> int:
    """The end of a preprocessor line, following backslash continuations."""
    k = i
    while True:
        end = _line_end(text, k)
        if end == len(text) or not text[:end].rstrip(" \t\r").endswith("\\"):
            return end
        k = end + 1


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


# ---- __shared__ ------------------------------------------------------------------------

def rewrite_shared(source: str) -> str:
    """The source with every ``__shared__`` declaration turned into emulator storage."""
    code = code_only(source)
    pieces, last = [], 0
    for match in _SHARED.finditer(code):
        at_file_scope = _brace_depth(code, match.start()) == 0
        body = source[match.start("body"):match.end("body")]
        line = _line_of(source, match.end())
        if match.group("extern"):
            replacement = _dynamic_shared(body, at_file_scope, line)
        else:
            replacement = _static_shared(body, at_file_scope, line)
        pieces += [source[last:match.start()], replacement]
        last = match.end()
    pieces.append(source[last:])
    return "".join(pieces)


def _brace_depth(code: str, position: int) -> int:
    return code.count("{", 0, position) - code.count("}", 0, position)


def _dynamic_shared(body: str, at_file_scope: bool, line: int) -> str:
    """``extern __shared__ T name[];`` as a pointer to the dynamic shared memory."""
    found = re.fullmatch(r"\s*(?P<type>.*?)\s*\b(?P<name>\w+)\s*\[\s*\]\s*", body, re.S)
    if not found:
        raise EmulatorCompileError(
            f"{SOURCE_NAME}:{line}: cannot read the extern __shared__ declaration "
            f"'extern __shared__{body};' (the emulator expects 'extern __shared__ T name[];')")
    ctype = " ".join(_ALIGN.sub("", found["type"]).split())
    name = found["name"]
    value = f"(reinterpret_cast<{ctype}*>(cuda_emu_dynamic_shared()))"
    if at_file_scope:  # a macro is visible in every later function, as the array was
        return (f"\n#undef {name}\n#define {name} {value}\n"
                f'#line {line} "{SOURCE_NAME}"\n')
    return f"{ctype}* const {name} = {value};" + "\n" * body.count("\n")


def _static_shared(body: str, at_file_scope: bool, line: int) -> str:
    """``__shared__ T a[N], b;`` as statics the runtime counts and fills."""
    names = _declared_names(body)
    if re.search(r"(?<![=<>!])=(?!=)", body):
        raise EmulatorCompileError(
            f"{SOURCE_NAME}:{line}: initializer not allowed for __shared__ variable "
            f"'{names[0] if names else body.strip()}' (nvcc and NVRTC refuse it too)")
    storage = f"static{body};"
    if at_file_scope:
        notes = " ".join(
            f"static const int cuda_emu_registered_{n} __attribute__((unused)) = "
            f"cuda_emu_register_shared(&{n}, sizeof({n}));" for n in names)
    else:
        notes = " ".join(f"cuda_emu_note_shared(&{n}, sizeof({n}), __LINE__);" for n in names)
    return f"{storage} {notes}"


def _declared_names(body: str) -> list[str]:
    """The variable names of a declaration body: ``float a[4], *b`` -> [a, b]."""
    declarators = _split_top_level(body)
    head = re.split(r"[\[=]", declarators[0], maxsplit=1)[0]
    first = re.search(r"(\w+)\s*$", head)
    names = [first.group(1)] if first else []
    for declarator in declarators[1:]:
        found = re.match(r"[\s*&]*(\w+)", declarator)
        if found:
            names.append(found.group(1))
    return names


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        depth += c in "([<"
        depth -= c in ")]>"
        if c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


# ---- the launch wrapper ------------------------------------------------------------------

_WRAPPER_HEAD = r'''
#line 1 "<emulator wrapper>"
namespace cuda_emu_wrapper {
template <unsigned long... I> struct seq {};
template <unsigned long N, unsigned long... I> struct make_seq : make_seq<N - 1, N - 1, I...> {};
template <unsigned long... I> struct make_seq<0, I...> { typedef seq<I...> type; };

// The C spelling of each parameter type Python can pass; "?" for any other.
template <typename T> struct type_name { static const char* get() { return "?"; } };
#define CUDA_EMU_TYPE_NAME(T)                                                         \
    template <> struct type_name<T> { static const char* get() { return #T; } };      \
    template <> struct type_name<T*> { static const char* get() { return #T "*"; } }; \
    template <> struct type_name<const T*> {                                          \
        static const char* get() { return "const " #T "*"; }                          \
    };
CUDA_EMU_TYPE_NAME(bool)
CUDA_EMU_TYPE_NAME(char)
CUDA_EMU_TYPE_NAME(signed char)
CUDA_EMU_TYPE_NAME(unsigned char)
CUDA_EMU_TYPE_NAME(short)
CUDA_EMU_TYPE_NAME(unsigned short)
CUDA_EMU_TYPE_NAME(int)
CUDA_EMU_TYPE_NAME(unsigned int)
CUDA_EMU_TYPE_NAME(long)
CUDA_EMU_TYPE_NAME(unsigned long)
CUDA_EMU_TYPE_NAME(long long)
CUDA_EMU_TYPE_NAME(unsigned long long)
CUDA_EMU_TYPE_NAME(float)
CUDA_EMU_TYPE_NAME(double)
template <> struct type_name<void*> { static const char* get() { return "void*"; } };
template <> struct type_name<const void*> { static const char* get() { return "const void*"; } };
#undef CUDA_EMU_TYPE_NAME

template <typename... P> struct Call {
    void (*kernel)(P...);
    void** args;  // args[i] points at the value of parameter i
};

template <typename... P, unsigned long... I>
void invoke(const Call<P...>& call, seq<I...>) {
    call.kernel(*static_cast<P*>(call.args[I])...);
}

template <typename... P> void thunk(void* context) {
    invoke(*static_cast<const Call<P...>*>(context), typename make_seq<sizeof...(P)>::type());
}

template <typename... P>
int launch(void (*kernel)(P...), const unsigned int* dims, unsigned long shared, void** args,
           const cuda_emu_guard* guards, int guard_count) {
    Call<P...> call{kernel, args};
    return cuda_emu_run_grid(dims, shared, &thunk<P...>, &call, guards, guard_count);
}

template <typename... P> const char* const* signature(void (*)(P...)) {
    static const char* const names[] = {type_name<P>::get()..., nullptr};
    return names;
}
}  // namespace cuda_emu_wrapper
#define CUDA_EMU_EXPORT extern "C" __attribute__((visibility("default")))
'''

_WRAPPER_KERNEL = '''
#line 1 "<name expression {index}: {name}>"
CUDA_EMU_EXPORT int cuda_emu_launch_{index}(const unsigned int* dims, unsigned long shared,
                                             void** args, const cuda_emu_guard* guards,
                                             int guard_count) {{
    return cuda_emu_wrapper::launch(&{name}, dims, shared, args, guards, guard_count);
}}
CUDA_EMU_EXPORT const char* const* cuda_emu_signature_{index}(void) {{
    return cuda_emu_wrapper::signature(&{name});
}}
'''


def wrapper(name_expressions: list[str]) -> str:
    """The launchers and signatures of every name expression, in order."""
    kernels = "".join(_WRAPPER_KERNEL.format(index=i, name=name)
                      for i, name in enumerate(name_expressions))
    return _WRAPPER_HEAD + kernels
