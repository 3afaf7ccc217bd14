"""LLVM intrinsics for Numba: population count, half -> float, and AVX-512 VNNI blocks.

Only what LLVM does not emit by itself from plain loops: ``ctpop`` has no NumPy spelling in
nopython mode, Numba has no CPU float16 type (so no ``fpext half``), and LLVM does not turn
our int8 loops into ``vpdpbusd``.
"""

from __future__ import annotations

import functools

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["popcount64", "half_to_float", "has_native_half", "has_vnni", "vnni_block"]


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
    triple = llvm.get_process_triple()
    if triple.startswith(("aarch64", "arm64")):
        return True
    return bool(llvm.get_host_cpu_features().get("f16c", False))


@functools.lru_cache(maxsize=None)
def has_vnni() -> bool:
    """Whether this CPU runs AVX-512 VNNI (``vpdpbusd`` on 512-bit registers)."""
    feats = llvm.get_host_cpu_features()
    return bool(feats.get("avx512f", False) and feats.get("avx512vnni", False) and feats.get("avx512bw", False))


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
