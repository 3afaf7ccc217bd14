"""Hits that serve RAG: ``Hit.text()`` and ``Hit.image()`` from the stored text or the source file,
clear errors when the file moved (and ``root=`` to find it), old indexes whose ``source`` is the
path as typed, and ``colprune search --with-text / --save-images``.

The pages are the demo PDFs (text layers) and a PNG, written per module; the index is built with
the API from random vectors, so no model loads.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import colprune as cp
from colprune.cli import main
from colprune.cli.errors import EXIT_NOT_FOUND
from colprune.content import MissingSourceError, image_name, page_file
from colprune.demo import write_demo_pdfs
from colprune.errors import InvalidInputError, NotFoundError

DIM = 16


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """docs/ with the demo PDFs (4 files of 4 pages) and scan.png, under a fresh folder."""
    d = tmp_path_factory.mktemp("hits") / "docs"
    write_demo_pdfs(str(d))
    from PIL import Image

    Image.new("RGB", (60, 40), (200, 30, 30)).save(d / "scan.png")
    (d / "notes.txt").write_text("plain notes about rivers", encoding="utf-8")
    return d


def _meta(docs, name: str, page: int, **extra) -> dict:
    """A page's metadata as `colprune build` writes it (source relative to the id root, absolute path)."""
    kind = {"pdf": "pdf", "png": "image", "txt": "text"}[name.rsplit(".", 1)[1]]
    return {"source": name, "path": os.path.abspath(os.path.join(docs, name)), "page": page, "kind": kind, **extra}


def _index(path, ids, metas, seed: int = 0):
    rng = np.random.default_rng(seed)
    with cp.Index.create(str(path), dim=DIM) as ix:
        ix.add(ids, [rng.standard_normal((5, DIM)).astype(np.float32) for _ in ids], metadata=metas)
    return cp.Index.open(str(path))


def _hit(ix, page_id):
    """The hit of ``page_id``: searched with its own first vector, so it ranks first."""
    q = ix.get(page_id).vectors[:1].astype(np.float32)
    return next(h for h in ix.search(q, k=len(ix)) if h.id == page_id)


def _about(size, dpi: int) -> bool:
    """An A4 page (8.27 x 11.69 in, the demo's) rendered at ``dpi``, to a pixel."""
    return abs(size[0] - 8.27 * dpi) <= 1 and abs(size[1] - 11.69 * dpi) <= 1


def test_text_and_image_of_a_pdf_hit_right_after_import_colprune(docs, tmp_path):
    with _index(tmp_path / "p.h5", ["rivers.pdf#3", "scan.png"],
                [_meta(docs, "rivers.pdf", 3), _meta(docs, "scan.png", 1)]) as ix:
        hit = _hit(ix, "rivers.pdf#3")
        assert isinstance(hit, cp.Hit) and hit == ("rivers.pdf#3", hit.score)
        assert "Danube" in hit.text() and "Vienna" in hit.text()
        img = hit.image()
        assert img.mode == "RGB" and _about(img.size, 144)  # A4 at scale 2: 144 dpi
        assert _about(hit.image(scale=0.5).size, 36)
        scan = _hit(ix, "scan.png")
        assert scan.text() == "" and scan.image().size == (60, 40)  # the image file itself
        with pytest.raises(InvalidInputError, match="scale"):
            hit.image(scale=0)


def test_stored_text_is_preferred_and_a_cut_one_is_read_again(docs, tmp_path):
    metas = [_meta(docs, "cells.pdf", 1, text="STORED TEXT"), _meta(docs, "cells.pdf", 2, text="Ribo", text_truncated=True),
             {"source": "gone/x.pdf", "path": "/nonexistent/gone/x.pdf", "page": 1, "text": "only copy"}]
    with _index(tmp_path / "s.h5", ["cells.pdf#1", "cells.pdf#2", "gone/x.pdf#1"], metas) as ix:
        assert _hit(ix, "cells.pdf#1").text() == "STORED TEXT"
        assert "Ribosomes translate messenger RNA" in _hit(ix, "cells.pdf#2").text()  # cut: the file has it all
        assert _hit(ix, "gone/x.pdf#1").text() == "only copy"  # the file is gone, the stored text is not


def test_a_moved_pdf_names_the_file_and_root_finds_it(docs, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(docs, moved / "docs")
    meta = _meta(moved / "docs", "thermometry.pdf", 1)
    with _index(tmp_path / "m.h5", ["thermometry.pdf#1"], [meta]) as ix:
        shutil.move(moved / "docs", tmp_path / "elsewhere")
        hit = _hit(ix, "thermometry.pdf#1")
        with pytest.raises(MissingSourceError, match="thermometry.pdf.*root=") as e:
            hit.text()
        assert isinstance(e.value, NotFoundError) and e.value.tried[0] == meta["path"]
        with pytest.raises(NotFoundError, match="thermometry.pdf"):
            hit.image()
        assert "Fahrenheit" in hit.text(root=str(tmp_path / "elsewhere"))
        assert _about(hit.image(root=str(tmp_path / "elsewhere"), scale=0.25).size, 18)


def test_old_indexes_whose_source_is_the_path_as_typed(docs, tmp_path, monkeypatch):
    """Built before `path` was recorded: source is relative to the folder the build ran in."""
    old = {"source": "docs/computing.pdf", "page": 2, "kind": "pdf"}
    with _index(tmp_path / "old.h5", ["computing.pdf#2"], [old]) as ix:
        hit = _hit(ix, "computing.pdf#2")
        monkeypatch.chdir(docs.parent)  # where that build ran
        assert "ColBERT" in hit.text()
        monkeypatch.chdir(tmp_path)
        with pytest.raises(MissingSourceError, match="docs/computing.pdf"):
            hit.text()
        assert "ColBERT" in hit.text(root=str(docs))  # root: the folder the ids are relative to


def test_pages_without_a_file_and_files_that_are_no_pages(docs, tmp_path):
    metas = [{"note": "added as embeddings"}, {"source": "/etc/passwd", "page": 1, "kind": "text"},
             _meta(docs, "notes.txt", 1), _meta(docs, "rivers.pdf", 9)]
    with _index(tmp_path / "n.h5", ["emb", "pw", "notes.txt", "rivers.pdf#9"], metas) as ix:
        with pytest.raises(NotFoundError, match="records no source file"):
            _hit(ix, "emb").text()
        with pytest.raises(InvalidInputError, match="not a PDF, image or text file"):  # the kind comes from the extension
            _hit(ix, "pw").text()
        notes = _hit(ix, "notes.txt")
        assert notes.text() == "plain notes about rivers" and page_file(notes).kind == "text"
        with pytest.raises(InvalidInputError, match="no image"):
            notes.image()
        with pytest.raises(InvalidInputError, match="has 4 pages.*changed since the build"):
            _hit(ix, "rivers.pdf#9").text()
    assert image_name("sub/report.pdf#3") == "sub_report.pdf_3.png"


def test_search_with_text_and_saved_images_from_the_cli(docs, tmp_path, capsys):
    ids = ["rivers.pdf#3", "cells.pdf#1", "notes.txt"]
    metas = [_meta(docs, "rivers.pdf", 3), _meta(docs, "cells.pdf", 1), _meta(docs, "notes.txt", 1)]
    with _index(tmp_path / "c.h5", ids, metas) as ix:
        q = ix.get("rivers.pdf#3").vectors[:2].astype(np.float32)
    np.save(tmp_path / "q.npy", q)
    out = tmp_path / "hits"
    args = ["search", str(tmp_path / "c.h5"), str(tmp_path / "q.npy"), "-k", "3"]
    assert main(args + ["--with-text", "--save-images", str(out), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert hits[0]["id"] == "rivers.pdf#3" and "Danube passes through four capital cities" in hits[0]["text"]
    by_id = {h["id"]: h for h in hits}
    assert by_id["notes.txt"]["text"] == "plain notes about rivers" and by_id["notes.txt"]["image"] is None
    assert os.path.basename(by_id["cells.pdf#1"]["image"]).endswith("cells.pdf_1.png")
    assert sorted(os.listdir(out)) == sorted(os.path.basename(h["image"]) for h in hits if h["image"])
    assert main(args + ["--with-text"]) == 0
    table = capsys.readouterr().out
    assert "The Danube passes through four capital cities" in table and "rivers.pdf p.3" in table
    # moved: the CLI names the file and --root
    shutil.copytree(docs, tmp_path / "copy")
    metas = [_meta(tmp_path / "copy", "rivers.pdf", 3)]
    with _index(tmp_path / "mv.h5", ["rivers.pdf#3"], metas):
        pass
    shutil.move(tmp_path / "copy", tmp_path / "copy2")
    args = ["search", str(tmp_path / "mv.h5"), str(tmp_path / "q.npy"), "-k", "1", "--with-text"]
    assert main(args) == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert "rivers.pdf" in err and "--root DIR" in err and "root=" not in err
    assert main(args + ["--root", str(tmp_path / "copy2")]) == 0 and "Danube" in capsys.readouterr().out


#: The README's Python API snippet as proposed in the lead's notes (rag-readme.md), verbatim:
#: tests/test_readme.py runs only shell blocks, so this runs the Python one.
README_SNIPPET = '''\
import numpy as np

import colprune as cp

rng = np.random.default_rng(0)            # stand-ins for an encoder's output (Encoders, below, gives real ones)
ids = [f"report.pdf#{n}" for n in range(1, 101)]                               # 100 pages
embeddings = [rng.standard_normal((700, 128), dtype=np.float32) for _ in ids]  # (n_tokens, dim) each
importance = [rng.random(700, dtype=np.float32) for _ in ids]                  # (n_tokens,) each
metadata = [{"source": "report.pdf", "page": n} for n in range(1, 101)]

pruner = cp.pruning.AdaptiveThreshold(k=-0.25)              # DocPruner
with cp.Index.create("pages.h5", dim=128, dtype="float16") as index:   # a collection: a folder
    kept = index.add(ids, embeddings, importance=importance, pruner=pruner, metadata=metadata)
kept[0]                                  # PrunedPage(n_kept=411, n_total=700): what was kept, one per page

index = cp.Index.open("pages.h5")                           # read-only snapshot; mode="a" to write
query = rng.standard_normal((20, 128), dtype=np.float32)    # ONE query: an (n_tokens, dim) array
hits = index.search(query, k=10)                            # a list of Hit, best first
hits[0].id, hits[0].score, hits[0].metadata                 # 'report.pdf#68', 717.9, {'source': ..., 'page': 68}

queries = [rng.standard_normal((n, 128), dtype=np.float32) for n in (12, 20, 7)]  # MANY: a list of arrays
results = index.search(queries, k=10)                       # a list of lists: results[q][rank]
for q, hits in enumerate(results):
    print(q, hits[0].id, round(hits[0].score, 2), hits[0].metadata["page"])

len(index), index.ids                                       # live pages, in commit order
page = index.get("report.pdf#7")   # .vectors .positions .importance .patch_mask .n_original .grid .metadata
'''


def test_the_readme_snippet_runs_for_one_query_and_many(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(README_SNIPPET, "README snippet", "exec"), scope)  # noqa: S102 - our own text
    assert isinstance(scope["hits"], list) and len(scope["results"]) == 3
    assert all(isinstance(h, cp.Hit) and h.metadata["source"] == "report.pdf" for hits in scope["results"] for h in hits)
    assert repr(scope["kept"][0]).startswith("PrunedPage(n_kept=") and len(repr(scope["kept"])) < 4000
    assert len(capsys.readouterr().out.splitlines()) == 3
