"""Build speed: pages/s of ``colprune.pipeline.build`` against a bare forward pass, and peak RSS.

    python bench/build.py                                  # financebench-dev PDFs, offline MiniLM
    python bench/build.py --files 2 --visual 16 --json     # 2 PDFs; also a tiny ColQwen2 on 16 pages
    python bench/build.py --quantize int8                  # the same with int8 dynamic quantisation

Each phase runs in its own process (so peak resident memory is the phase's own), one after the
other in the same run: a bare forward pass of the same model over the very same token windows
(text extracted beforehand, untimed; windows and length-sorted batches from the encoder's own
``windows``/``batches``), then the whole build as ``colprune build`` runs it by default (PDF
reading, encoding with the attention the default importance signal needs, DocPruner pruning at
k=-0.25, writing the index), then the bare forward pass again; the
ratio is the build's pages/s over the faster of the two forward passes. With ``--visual N``
the same is done for a random-weight tiny ColQwen2 (``tests/tiny_models.py``) on the first N
rendered pages: forward = processor output → model, without attention weights.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from _machine import cpu_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FOLDER = os.path.join(ROOT, "..", "shared", "data", "financebench-dev", "pdfs")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _texts(files: list[str]) -> list[str]:
    import pypdfium2 as pdfium

    out = []
    for f in files:
        doc = pdfium.PdfDocument(f)
        for page in doc:
            tp = page.get_textpage()
            t = tp.get_text_range()
            tp.close()
            if t.strip():
                out.append(t)
        doc.close()
    return out


def child_forward(files: list[str], quantize: str | None, dtype: str | None, batch: int) -> dict:
    import torch

    from colprune.encoders import TextTokenEncoder

    enc = TextTokenEncoder("minilm", quantize=quantize, dtype=dtype)
    texts = _texts(files)
    t0 = time.perf_counter()
    ids, _ = enc.windows(texts)
    n_tokens = sum(len(x) for x in ids)
    for group in enc.batches(ids, batch):
        rows = [ids[i] for i in group]
        s = max(len(x) for x in rows)
        input_ids = torch.zeros((len(rows), s), dtype=torch.long)
        mask = torch.zeros((len(rows), s), dtype=torch.long)
        for i, x in enumerate(rows):
            input_ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        with torch.no_grad():
            enc.model(input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids))
    sec = time.perf_counter() - t0
    return {"pages": len(texts), "windows": len(ids), "tokens": n_tokens, "seconds": sec,
            "pages_per_s": len(texts) / sec, "peak_rss_mb": _rss_mb()}


def child_build(files: list[str], quantize: str | None, dtype: str | None, batch: int, model: str | None) -> dict:
    from colprune.pipeline import DEFAULT_IMPORTANCE, build

    encoder = None
    if model is None:
        from colprune.encoders import TextTokenEncoder

        # what `colprune build` does by default: DocPruner (k=-0.25) over the default signal
        encoder = TextTokenEncoder("minilm", quantize=quantize, dtype=dtype, importance=DEFAULT_IMPORTANCE)
    with tempfile.TemporaryDirectory() as tmp:
        report = build(files, os.path.join(tmp, "bench.h5"), model=model or "minilm", encoder=encoder,
                       pruner="adaptive", progress=False, commit_pages=batch, overwrite=True)
    return {"pages": report.indexed, "skipped": len(report.skipped), "seconds": report.seconds,
            "pages_per_s": report.pages_per_second, "peak_rss_mb": _rss_mb()}


def child_visual_forward(files: list[str], model: str, n_pages: int, batch: int) -> dict:
    import pypdfium2 as pdfium
    import torch

    from colprune.encoders import VisualEncoder

    enc = VisualEncoder(model)
    images = []
    for f in files:
        doc = pdfium.PdfDocument(f)
        for page in doc:
            if len(images) < n_pages:
                images.append(page.render(scale=144 / 72).to_pil().convert("RGB"))
        doc.close()
    t0 = time.perf_counter()
    for lo in range(0, len(images), batch):
        b = enc.processor(images=images[lo : lo + batch])
        with torch.no_grad():
            enc._forward(b, with_attention=False)
    sec = time.perf_counter() - t0
    return {"pages": len(images), "seconds": sec, "pages_per_s": len(images) / sec, "peak_rss_mb": _rss_mb()}


def _run(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"phase {args[:2]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _visual_files(files: list[str], n_pages: int, tmp: str) -> list[str]:
    """The first n_pages pages as one PDF, so the build and the forward pass see the same pages."""
    import pypdfium2 as pdfium

    dst = pdfium.PdfDocument.new()
    for f in files:
        src = pdfium.PdfDocument(f)
        take = min(len(src), n_pages - len(dst))
        if take > 0:
            dst.import_pages(src, list(range(take)))
        src.close()
    path = os.path.join(tmp, "visual.pdf")
    dst.save(path)
    dst.close()
    return [path]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", default=DEFAULT_FOLDER)
    ap.add_argument("--files", type=int, default=0, help="only the first N PDFs (0: all)")
    ap.add_argument("--batch", type=int, default=32, help="pages per encoder call and commit (the build's default)")
    ap.add_argument("--quantize", choices=["int8"], default=None)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    ap.add_argument("--visual", type=int, default=0, help="also a tiny ColQwen2 on the first N rendered pages")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    files = sorted(glob.glob(os.path.join(args.folder, "*.pdf")))
    if args.files:
        files = files[: args.files]
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "forward":
            res = child_forward(rest, args.quantize, args.dtype, args.batch)
        elif kind == "build":
            res = child_build(rest, args.quantize, args.dtype, args.batch, None)
        elif kind == "vbuild":
            res = child_build(rest[1:], None, None, 4, rest[0])
        else:
            res = child_visual_forward(rest[2:], rest[0], int(rest[1]), 4)
        print(json.dumps(res))
        return
    if not files:
        raise SystemExit(f"no PDFs in {args.folder} (the financebench-dev set lives in ../shared/data)")
    common = ["--batch", str(args.batch)] + (["--quantize", args.quantize] if args.quantize else []) + (
        ["--dtype", args.dtype] if args.dtype else [])
    result: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "files": len(files)}
    fwd1 = _run([*common, "--child", "forward", *files])
    build = _run([*common, "--child", "build", *files])
    fwd2 = _run([*common, "--child", "forward", *files])
    fwd = max(fwd1, fwd2, key=lambda r: r["pages_per_s"])
    result["text"] = {"forward": fwd, "forward_runs_pages_per_s": [fwd1["pages_per_s"], fwd2["pages_per_s"]],
                      "build": build, "ratio": build["pages_per_s"] * (build["pages"] / max(build["pages"], 1))
                      / fwd["pages_per_s"]}
    if args.visual:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from tiny_models import save_tiny_colqwen2

        with tempfile.TemporaryDirectory() as tmp:
            model = save_tiny_colqwen2(os.path.join(tmp, "colqwen2"))
            vfiles = _visual_files(files, args.visual, tmp)
            vf = _run(["--child", "vforward", model, str(args.visual), *vfiles])
            vb = _run(["--child", "vbuild", model, *vfiles])
        result["visual"] = {"forward": vf, "build": vb, "ratio": vb["pages_per_s"] / vf["pages_per_s"]}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"CPU: {result['cpu']} ({os.cpu_count()} cores); {len(files)} PDFs")
    t = result["text"]
    print(f"minilm{' ' + args.quantize if args.quantize else ''}{' ' + args.dtype if args.dtype else ''}: "
          f"bare forward {fwd['pages_per_s']:.2f} pages/s ({fwd['pages']} pages, {fwd['windows']} windows, "
          f"{fwd['tokens']:,} tokens; runs {fwd1['pages_per_s']:.2f} / {fwd2['pages_per_s']:.2f})"
          f", peak RSS {fwd['peak_rss_mb']:.0f} MB")
    print(f"  build {build['pages_per_s']:.2f} pages/s ({build['pages']} pages, {build['skipped']} skipped), "
          f"ratio to bare forward {t['ratio']:.2f}, peak RSS {build['peak_rss_mb']:.0f} MB")
    if args.visual:
        v = result["visual"]
        print(f"tiny colqwen2 on {v['forward']['pages']} rendered pages: bare forward {v['forward']['pages_per_s']:.2f} pages/s, "
              f"build {v['build']['pages_per_s']:.2f} pages/s, ratio {v['ratio']:.2f}"
              f", peak RSS {v['build']['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
