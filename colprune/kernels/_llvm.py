"""LLVM intrinsics for Numba, and the SIMD features of the CPU Numba compiles for.

Only what LLVM does not emit by itself from plain loops: ``ctpop`` has no NumPy spelling in
nopython mode, Numba has no CPU float16 type (so no ``fpext half``), and LLVM does not turn
our int8 loops into ``vpdpbusd``.

Feature checks describe the *compilation target*, not the machine: ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` retarget Numba (e.g. ``NUMBA_CPU_NAME=haswell`` compiles and runs the
AVX2 paths on an AVX-512 machine). Numba itself pairs a foreign ``NUMBA_CPU_NAME`` with the
*host's* feature list (so ``haswell`` would still get AVX-512); when only the name is given,
this module clears the feature list before anything is compiled, so the name's own features
apply.
"""

from __future__ import annotations

import functools
import os

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import config
from numba.extending import intrinsic

__all__ = ["popcount64", "half_to_float", "has_native_half", "has_vnni", "vnni_block", "target_cpu", "target_features",
           "is_x86", "is_aarch64"]

# What LLVM enables for x86 CPU names, restricted to the features these kernels dispatch on.
_AVX2 = frozenset({"sse4.2", "popcnt", "avx", "avx2", "fma", "f16c", "bmi", "bmi2"})
_AVX512 = _AVX2 | {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}
_VNNI = _AVX512 | {"avx512vnni"}
_ICL = _VNNI | {"avx512vpopcntdq", "avx512bitalg"}
_CPU_FEATURES = {
    **dict.fromkeys(["x86-64", "generic", "core2", "nehalem"], frozenset()),
    **dict.fromkeys(["x86-64-v2", "westmere", "silvermont", "btver2"], frozenset({"sse4.2", "popcnt"})),
    **dict.fromkeys(["sandybridge", "ivybridge"], frozenset({"sse4.2", "popcnt", "avx"})),
    **dict.fromkeys(["x86-64-v3", "haswell", "broadwell", "skylake", "znver1", "znver2", "znver3", "bdver4",
                     "alderlake", "raptorlake", "meteorlake", "gracemont"], _AVX2),
    **dict.fromkeys(["x86-64-v4", "skylake-avx512", "cooperlake", "knl", "knm"], _AVX512),
    "cascadelake": _VNNI,
    **dict.fromkeys(["icelake-client", "icelake-server", "tigerlake", "rocketlake", "sapphirerapids",
                     "emeraldrapids", "graniterapids", "znver4", "znver5"], _ICL),
}


def _retarget_from_env() -> None:
    # NUMBA_CPU_NAME without NUMBA_CPU_FEATURES: let the name decide the features (Numba would
    # pass the host's). Must run before Numba builds its codegen, i.e. before the first compile.
    name = config.CPU_NAME
    if name and name != "host" and config.CPU_FEATURES is None and "NUMBA_CPU_FEATURES" not in os.environ:
        config.CPU_FEATURES = ""


_retarget_from_env()


def is_x86() -> bool:
    return llvm.get_process_triple().startswith(("x86_64", "i686", "i386"))


def is_aarch64() -> bool:
    return llvm.get_process_triple().startswith(("aarch64", "arm64"))


@functools.lru_cache(maxsize=None)
def target_cpu() -> str:
    """The CPU name Numba compiles for (``NUMBA_CPU_NAME`` or the host's)."""
    name = config.CPU_NAME
    return llvm.get_host_cpu_name() if not name or name == "host" else name


@functools.lru_cache(maxsize=None)
def target_features() -> frozenset:
    """SIMD features of the compilation target: the host's, or those of ``NUMBA_CPU_NAME``
    adjusted by ``NUMBA_CPU_FEATURES`` (``+avx2,-avx512f``...). A CPU name this module does
    not know, without a feature list, counts as having none (portable kernels: correct, slower).
    """
    spec = config.CPU_FEATURES
    name = config.CPU_NAME
    if not name or name == "host":
        base = {k for k, v in llvm.get_host_cpu_features().items() if v}
        if spec is None:
            return frozenset(base)
    else:
        base = set(_CPU_FEATURES.get(name, frozenset()))
    for item in (spec or "").split(","):
        item = item.strip()
        if item[:1] == "+":
            base.add(item[1:])
        elif item[:1] == "-":
            base.discard(item[1:])
    return frozenset(base)


@intrinsic
def popcount64(typingctx, x):
    """Number of set bits of a uint64."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def half_to_float(typingctx, x):
    """IEEE half bits (uint16) -> float32, exactly: ``fpext half`` on the bit pattern.

    In a loop LLVM vectorises it into ``vcvtph2ps`` (16 halves per instruction with F16C /
    AVX-512). Use only where :func:`has_native_half`: elsewhere LLVM would call a runtime
    helper that Numba's JIT may not link.
    """
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@functools.lru_cache(maxsize=None)
def has_native_half() -> bool:
    """Whether the CPU converts half to float in hardware (x86 F16C, or any AArch64)."""
    if is_aarch64():
        return True
    return is_x86() and "f16c" in target_features()


@functools.lru_cache(maxsize=None)
def has_vnni() -> bool:
    """Whether this CPU runs AVX-512 VNNI (``vpdpbusd`` on 512-bit registers)."""
    return is_x86() and {"avx512f", "avx512vnni", "avx512bw"} <= target_features()


@functools.lru_cache(maxsize=None)
def vnni_block(dim: int, n_docs: int):
    """An intrinsic ``f(q_addr, d_addr, out_addr)`` computing 16 × ``n_docs`` int8 dot products.

    ``q_addr``: 16 query rows packed as ``(dim // 4, 16, 4)`` uint8 (int8 value + 128).
    ``d_addr``: ``n_docs`` consecutive int8 doc vectors of ``dim`` bytes.
    ``out_addr``: ``(n_docs, 16)`` int32 receiving ``sum_t (q + 128) * d``.
    Each doc vector has its own accumulator chain, so the chains overlap in the pipeline.
    """
    steps = dim // 4

    @intrinsic
    def block(typingctx, q_addr, d_addr, out_addr):
        sig = types.void(types.uintp, types.uintp, types.uintp)

        def codegen(context, builder, signature, args):
            i32, i64 = ir.IntType(32), ir.IntType(64)
            v16 = ir.VectorType(i32, 16)
            mod = builder.module
            name = "llvm.x86.avx512.vpdpbusd.512"
            fn = mod.globals.get(name) or ir.Function(mod, ir.FunctionType(v16, [v16, v16, v16]), name)
            qp = builder.inttoptr(args[0], v16.as_pointer())
            dp = builder.inttoptr(args[1], i32.as_pointer())
            op = builder.inttoptr(args[2], v16.as_pointer())
            undef = ir.Constant(v16, ir.Undefined)
            splat = ir.Constant(v16, [0] * 16)
            accs = [ir.Constant(v16, [0] * 16) for _ in range(n_docs)]
            for s in range(steps):
                qv = builder.load(builder.gep(qp, [ir.Constant(i64, s)]), align=1)
                for r in range(n_docs):
                    dw = builder.load(builder.gep(dp, [ir.Constant(i64, r * steps + s)]), align=1)
                    dv = builder.shuffle_vector(builder.insert_element(undef, dw, ir.Constant(i32, 0)), undef, splat)
                    accs[r] = builder.call(fn, [accs[r], qv, dv])
            for r in range(n_docs):
                builder.store(accs[r], builder.gep(op, [ir.Constant(i64, r)]), align=1)
            return context.get_dummy_value()

        return sig, codegen

    return block
