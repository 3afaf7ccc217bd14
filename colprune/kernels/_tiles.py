"""Register-tiled MaxSim blocks as LLVM IR intrinsics (the GEMM micro-kernel shape).

A tile scores ``R`` groups of ``W`` query rows against ``C`` consecutive document vectors and
folds the ``R*W x C`` dot products into the running per-row maxima, without a horizontal sum:

    for t in range(dim):                       # a loop in IR, unrolled by 4
        for c in range(C): d = splat(doc[c, t])        # one broadcast load each
            for r in range(R): acc[c][r] += q[r][t, :] * d   # one FMA each (fmuladd)
    best[r] = max(best[r], acc[c][r])          # vmaxps, once per (c, r)

Queries are packed per group of ``W`` rows as ``(dim, W)`` (row lanes contiguous), so every
accumulator is a whole SIMD register and loads per multiply-add stay at ``(R + C) / (R*C)``.
``W`` is the register width in floats (8 for AVX2, 16 for AVX-512); LLVM lowers the generic
vector IR for whatever target Numba compiles for, so the tiles are correct anywhere (they are
only *used* where they were measured to pay: x86 with FMA).

The integer tile is the same loop over pairs of dimensions with ``pmaddwd`` (int16 x int16 ->
pairwise int32 sums, 2x the multiply-adds of an FMA per instruction): query codes packed as
``(dim/2, W, 2)`` int16, document codes widened to int16 before the tile.
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["float_tile", "int16_tile", "stable"]

UNROLL = 4


def stable(obj, key: str):
    """Give a Numba intrinsic or dispatcher a fixed identity instead of a random UUID.

    Numba's on-disk cache keys a closure by its pickled cells; intrinsics and dispatchers in
    those cells pickle with a per-process UUID, so every new process missed the cache and
    recompiled (and appended another entry). Keys must be unique per distinct object.
    """
    try:
        obj._set_uuid(f"colprune:{key}")  # house: Numba keeps no public way to name a dispatcher for its cache
    except (AssertionError, AttributeError):  # already has one (pickled before): keep it
        pass
    return obj


def _fn(mod, name, ret, args):
    return mod.globals.get(name) or ir.Function(mod, ir.FunctionType(ret, args), name)


def _splat(builder, scalar, vt):
    undef = ir.Constant(vt, ir.Undefined)
    one = builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(ir.IntType(32), vt.count), [0] * vt.count))


def _tile_loop(builder, steps: int, n_acc: int, acc_type, step_body):
    """Emit ``for s in range(steps)`` (unrolled by UNROLL, remainder straight-line) carrying
    ``n_acc`` accumulators through phis; ``step_body(builder, s_value, accs) -> accs``."""
    i64 = ir.IntType(64)
    zero = ir.Constant(acc_type, None)
    accs = [zero] * n_acc
    n_main = steps // UNROLL
    if n_main:
        pre = builder.block
        loop = builder.append_basic_block("tile.loop")
        done = builder.append_basic_block("tile.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        s_phi = builder.phi(i64)
        s_phi.add_incoming(ir.Constant(i64, 0), pre)
        phis = []
        for a in accs:
            p = builder.phi(acc_type)
            p.add_incoming(a, pre)
            phis.append(p)
        cur = list(phis)
        for u in range(UNROLL):
            cur = step_body(builder, builder.add(s_phi, ir.Constant(i64, u)), cur)
        s_next = builder.add(s_phi, ir.Constant(i64, UNROLL))
        end = builder.block
        s_phi.add_incoming(s_next, end)
        for p, v in zip(phis, cur):
            p.add_incoming(v, end)
        builder.cbranch(builder.icmp_unsigned("<", s_next, ir.Constant(i64, n_main * UNROLL)), loop, done)
        builder.position_at_end(done)
        accs = cur
    for s in range(n_main * UNROLL, steps):
        accs = step_body(builder, ir.Constant(i64, s), accs)
    return accs


def _fold_max(builder, bp, acc_vals, n_groups, n_docs, vt):
    i64 = ir.IntType(64)
    for r in range(n_groups):
        ptr = builder.gep(bp, [ir.Constant(i64, r)])
        best = builder.load(ptr, align=4)
        for c in range(n_docs):
            a = acc_vals[c * n_groups + r]
            best = builder.select(builder.fcmp_ordered(">", a, best), a, best)
        builder.store(best, ptr, align=4)


@functools.lru_cache(maxsize=None)
def float_tile(dim: int, width: int, n_groups: int, n_docs: int):
    """Intrinsic ``f(q_addr, d_addr, best_addr)``: float32 MaxSim tile.

    ``q_addr``: ``n_groups`` packed query groups, each ``(dim, width)`` float32, back to back.
    ``d_addr``: ``n_docs`` consecutive float32 vectors of ``dim``.
    ``best_addr``: ``n_groups * width`` float32 running maxima, updated in place.
    """

    @intrinsic
    def tile(typingctx, q_addr, d_addr, best_addr):
        sig = types.void(types.uintp, types.uintp, types.uintp)

        def codegen(context, builder, signature, args):
            f32, i64 = ir.FloatType(), ir.IntType(64)
            vt = ir.VectorType(f32, width)
            fmuladd = _fn(builder.module, f"llvm.fmuladd.v{width}f32", vt, [vt, vt, vt])
            qp = builder.inttoptr(args[0], vt.as_pointer())
            dp = builder.inttoptr(args[1], f32.as_pointer())
            bp = builder.inttoptr(args[2], vt.as_pointer())

            def step(b, s, accs):
                qv = [b.load(b.gep(qp, [b.add(s, ir.Constant(i64, r * dim))]), align=4) for r in range(n_groups)]
                out = list(accs)
                for c in range(n_docs):
                    dv = _splat(b, b.load(b.gep(dp, [b.add(s, ir.Constant(i64, c * dim))]), align=4), vt)
                    for r in range(n_groups):
                        k = c * n_groups + r
                        out[k] = b.call(fmuladd, [qv[r], dv, out[k]])
                return out

            accs = _tile_loop(builder, dim, n_groups * n_docs, vt, step)
            _fold_max(builder, bp, accs, n_groups, n_docs, vt)
            return context.get_dummy_value()

        return sig, codegen

    return stable(tile, f"float_tile:{dim}:{width}:{n_groups}:{n_docs}")


@functools.lru_cache(maxsize=None)
def int16_tile(dim: int, width: int, n_groups: int, n_docs: int):
    """Intrinsic ``f(q_addr, d_addr, s_addr, best_addr)``: int8-code MaxSim tile via ``pmaddwd``.

    ``q_addr``: ``n_groups`` packed groups, each ``(dim // 2, width, 2)`` int16 query codes.
    ``d_addr``: ``n_docs`` consecutive int16 code vectors of ``dim`` (even).
    ``s_addr``: the ``n_docs`` documents' float32 scales.
    ``best_addr``: ``n_groups * width`` float32 maxima of ``scale_j * <q_i, d_j>`` (exact int32 dot).
    x86 only: ``width`` 8 needs AVX2, 16 needs AVX-512BW.
    """
    steps = dim // 2
    name = {8: "llvm.x86.avx2.pmadd.wd", 16: "llvm.x86.avx512.pmaddw.d.512"}[width]

    @intrinsic
    def tile(typingctx, q_addr, d_addr, s_addr, best_addr):
        sig = types.void(types.uintp, types.uintp, types.uintp, types.uintp)

        def codegen(context, builder, signature, args):
            f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
            vi = ir.VectorType(i32, width)
            vw = ir.VectorType(ir.IntType(16), 2 * width)
            vf = ir.VectorType(f32, width)
            pmadd = _fn(builder.module, name, vi, [vw, vw])
            qp = builder.inttoptr(args[0], vw.as_pointer())
            dp = builder.inttoptr(args[1], i32.as_pointer())
            sp = builder.inttoptr(args[2], f32.as_pointer())
            bp = builder.inttoptr(args[3], vf.as_pointer())

            def step(b, s, accs):
                qv = [b.load(b.gep(qp, [b.add(s, ir.Constant(i64, r * steps))]), align=2) for r in range(n_groups)]
                out = list(accs)
                for c in range(n_docs):
                    dv = b.bitcast(_splat(b, b.load(b.gep(dp, [b.add(s, ir.Constant(i64, c * steps))]), align=2), vi), vw)
                    for r in range(n_groups):
                        k = c * n_groups + r
                        out[k] = b.add(out[k], b.call(pmadd, [qv[r], dv]))
                return out

            accs = _tile_loop(builder, steps, n_groups * n_docs, vi, step)
            scaled = []
            for c in range(n_docs):
                sc = _splat(builder, builder.load(builder.gep(sp, [ir.Constant(i64, c)]), align=4), vf)
                for r in range(n_groups):
                    scaled.append(builder.fmul(builder.sitofp(accs[c * n_groups + r], vf), sc))
            _fold_max(builder, bp, scaled, n_groups, n_docs, vf)
            return context.get_dummy_value()

        return sig, codegen

    return stable(tile, f"int16_tile:{dim}:{width}:{n_groups}:{n_docs}")
