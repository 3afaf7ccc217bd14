"""Do pruners keep content? Share of kept patches inside PubLayNet layout boxes, per pruner.

    python tests/tiny_models.py /tmp/tiny            # or any ColQwen2 / ColPali checkpoint
    python bench/layout_check.py --model /tmp/tiny/colqwen2 [--ratio 0.3] [--json]

For each page of ../shared/data/pages/publaynet: encode with the model (for the grid and the
attention signals), keep ``--ratio`` of the patches by each method, and report the share of
kept patches whose cell centre lies in a layout box (text, title, list, table, figure)
against the share of the page the boxes cover; lift = kept / page (random ~ 1). Methods:
the encoder's attention signals (eos, indegree, indegree_mid), ink density (share of dark
pixels per cell, model-free), and random.

With a random-weight tiny model the attention rows measure nothing; they show the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from colprune.encoders import collect_pages, load_encoder
from colprune.pruning import Random, TopRatio
from colprune.study.layout import cells_in_boxes, content_share, ink_density, load_coco_boxes

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "pages", "publaynet")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="ColQwen2 / ColPali checkpoint (path or hub id)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder with page images and samples.json")
    ap.add_argument("--ratio", type=float, default=0.3, help="share of patches each method keeps")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not os.path.exists(os.path.join(args.data, "samples.json")):
        print(f"no samples.json under {args.data} (see shared/README.md)", file=sys.stderr)
        return 2
    boxes = load_coco_boxes(os.path.join(args.data, "samples.json"))
    pages = [p for p in collect_pages([args.data]) if os.path.basename(p.path) in boxes]
    encoder = load_encoder(args.model)
    images = [p.image() for p in pages]
    encoded = encoder.encode_pages(images, batch_size=4)
    results: dict[str, list[dict]] = {}
    for page, image, enc in zip(pages, images, encoded):
        if enc.grid is None:
            continue
        in_box = cells_in_boxes(boxes[os.path.basename(page.path)], image.size, enc.grid)
        patch = enc.patch_mask
        patch_vectors = enc.vectors[patch]
        scores = {name: enc.signals[name][patch] for name in ("eos", "indegree", "indegree_mid") if name in enc.signals}
        scores["ink-density"] = ink_density(image, enc.grid)
        for name, s in scores.items():
            kept = TopRatio(args.ratio).prune(patch_vectors, s).positions
            results.setdefault(name, []).append(content_share(kept, in_box))
        kept = Random(args.ratio, seed=0).prune(patch_vectors).positions
        results.setdefault("random", []).append(content_share(kept, in_box))
    summary = {name: {k: float(np.nanmean([r[k] for r in rs])) for k in ("kept_in_boxes", "page_in_boxes", "lift")}
               for name, rs in results.items()}
    if args.json:
        print(json.dumps({"model": args.model, "ratio": args.ratio, "pages": len(pages), "methods": summary}, indent=1))
        return 0
    print(f"{len(pages)} PubLayNet pages, model {args.model}, keeping {args.ratio:.0%} of patches")
    print(f"{'method':<14} kept in boxes   page in boxes   lift")
    for name, r in sorted(summary.items(), key=lambda kv: -kv[1]["lift"]):
        print(f"{name:<14} {r['kept_in_boxes']:>12.1%} {r['page_in_boxes']:>15.1%} {r['lift']:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
