"""Cross-compiling for a device: which compiler links its libraries, and does it build for the device's CPU.

TVM compiles for any target with its bundled LLVM; only `export_library` needs a compiler, which must
produce code for the target's architecture: the host's own (TVM's default, `CC`/`CXX` or g++) for boards
like the host, a cross compiler (`--cc aarch64-linux-gnu-gcc`) for the others.
"""

from __future__ import annotations

import re
import subprocess

from hwlat._errors import HwlatError

_FAMILIES = ((r"x86_64|amd64|x64", "x86_64"), (r"i[3-6]86|x86", "x86"), (r"aarch64(_be)?|arm64(e|_32)?", "aarch64"),
             (r"arm.*|thumb.*", "arm"))


def target_triple(spec: dict) -> str | None:
    """The LLVM triple a TVM target dict compiles CPU code for (its own or its host's), None if it names none."""
    host = spec.get("host") if isinstance(spec.get("host"), dict) else {}
    return spec.get("mtriple") or host.get("mtriple") or None


def triple_arch(triple: str) -> str:
    """Architecture family of a triple, aliases folded: ``arm64-apple-macos`` and ``aarch64-linux-gnu`` are aarch64."""
    arch = triple.split("-")[0].lower()
    return next((family for pattern, family in _FAMILIES if re.fullmatch(pattern, arch)), arch)


def default_compiler() -> str | None:
    """The compiler TVM links libraries with when none is given (None if this host has none)."""
    from tvm.support.cc import get_cc

    return get_cc()


def compiler_triple(cc: str) -> str:
    """The triple `cc -dumpmachine` reports (gcc and clang); HwlatError if `cc` is missing or does not answer."""
    try:
        answer = subprocess.run([cc, "-dumpmachine"], check=False, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise HwlatError(f"compiler {cc!r} not found on PATH") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HwlatError(f"compiler {cc!r} cannot be run: {exc}") from None
    if answer.returncode != 0 or not answer.stdout.strip():
        raise HwlatError(f"compiler {cc!r} did not report its target (`{cc} -dumpmachine` exited {answer.returncode})")
    return answer.stdout.strip()


def link_compiler(spec: dict, cc: str | None, device: str) -> str:
    """The compiler that links libraries for target `spec` on this host: `cc`, else TVM's default.

    HwlatError naming what is missing when there is none or it builds for another architecture than the
    target's mtriple (or its host's).
    """
    compiler = cc or default_compiler()
    if compiler is None:
        raise HwlatError(f"device {device!r}: no C compiler on this host to link libraries: install gcc or pass --cc")
    try:
        built = compiler_triple(compiler)
    except HwlatError as exc:
        raise HwlatError(f"device {device!r}: {'cross ' if cc else ''}{exc}{' (--cc)' if cc else ''}") from None
    wanted = target_triple(spec)
    if wanted and triple_arch(wanted) != triple_arch(built):
        given = f"--cc {cc}" if cc else f"this host's compiler {compiler}"
        raise HwlatError(f"device {device!r} targets {wanted} but {given} builds for {built}: pass --cc with a "
                         f"cross compiler for {triple_arch(wanted)}, e.g. --cc {wanted}-gcc")
    return compiler
