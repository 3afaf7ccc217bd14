"""colprune.pipeline.build: builds that finish, ids that do not depend on the working directory,
resuming, changed files, settings checked before the model loads, Ctrl-C."""

import os

import pytest
from conftest import write_pdf

import colprune as cp
from colprune.demo import write_demo_pdfs
from colprune.encoders import PageError, load_encoder
from colprune.pipeline import NO_TEXT, BuildReport, build, list_pages


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm")


def _pdf(path, pages):
    write_pdf(path, pages, size=(8, 11))


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    write_demo_pdfs(str(folder))  # 4 PDFs x 4 pages
    _pdf(folder / "gaps.pdf", ["whales sing in the deep ocean", "", "owls hunt at night"])  # a blank page
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF")
    (folder / "notes.txt").write_text("a note about glaciers and ice ages")
    return folder


def test_build_finishes_skipping_what_it_cannot_embed(docs, tmp_path, minilm):
    events = []
    report = build([str(docs)], str(tmp_path / "a.h5"), encoder=minilm, progress=False,
                   on_event=lambda kind, info: events.append((kind, info)))
    assert isinstance(report, BuildReport)
    assert report.indexed == 16 + 2 + 1 and not report.interrupted
    assert report.skipped["gaps.pdf#2"] == NO_TEXT
    assert report.skipped["broken.pdf"] == "damaged PDF (truncated at byte 26: no %%EOF end marker)"
    assert report.warning_line().startswith("warning: skipped 2 pages or files")
    assert "indexed 19 pages" in report.summary() and "skipped 2" in report.summary()
    assert [k for k, _ in events if k == "skipped"] == ["skipped"] * 2 and events[-1][0] == "done"
    with cp.Index.open(tmp_path / "a.h5") as ix:
        assert "gaps.pdf#3" in ix and "notes.txt" in ix and "thermometry.pdf#1" in ix
        meta = ix.get("cells.pdf#2").metadata
        assert meta["source"].endswith("cells.pdf") and meta["page"] == 2 and len(meta["sha256"]) == 64
        assert ix.encoder == "minilm"


def test_page_ids_do_not_depend_on_how_the_folder_is_named(docs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    forms = [["docs"], ["./docs/"], [str(docs.resolve())]]
    ids = [[j.id for j in list_pages(f)] for f in forms]
    assert ids[0] == ids[1] == ids[2] and "rivers.pdf#3" in ids[0]
    assert [j.id for j in list_pages(["docs/cells.pdf"])][:1] == ["cells.pdf#1"]
    assert [j.id for j in list_pages(["docs"], id_root=".")][0].startswith("docs/")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("same name, other folder")
    with pytest.raises(cp.InvalidInputError, match="both give the page id 'notes.txt'.*id_root"):
        list_pages(["docs", "other"])


def test_strict_stops_at_the_first_bad_file(docs, tmp_path, minilm):
    with pytest.raises(PageError, match="broken.pdf: damaged PDF .truncated"):
        build([str(docs)], str(tmp_path / "s.h5"), encoder=minilm, progress=False, strict=True)
    (docs / "broken.pdf").unlink()
    with pytest.raises(PageError, match="gaps.pdf#2"):
        build([str(docs)], str(tmp_path / "s.h5"), encoder=minilm, progress=False, strict=True)


def test_resume_skips_present_pages_and_reports_changed_files(docs, tmp_path, minilm):
    out = str(tmp_path / "r.h5")
    first = build([str(docs)], out, encoder=minilm, progress=False)
    again = build([str(docs)], out, encoder=minilm, progress=False)
    assert again.indexed == 0 and again.already_present == first.indexed
    (docs / "notes.txt").write_text("the note now speaks of volcanoes")
    changed = build([str(docs)], out, encoder=minilm, progress=False)
    assert changed.changed_not_replaced == ["notes.txt"] and changed.indexed == 0


def test_settings_are_checked_before_the_model_loads(docs, tmp_path, minilm, monkeypatch):
    out = str(tmp_path / "c.h5")
    build([str(docs / "cells.pdf")], out, encoder=minilm, progress=False, pruner="none")

    def no_model(*a, **k):
        raise AssertionError("the model must not load when the settings do not fit")

    monkeypatch.setattr("colprune.encoders.load_encoder", no_model)
    with pytest.raises(cp.InvalidInputError, match=r"holds pages pruned with .*none.*--pruner none"):
        build([str(docs)], out, progress=False, pruner="ward")
    with pytest.raises(cp.InvalidInputError, match="float16 vectors.*--dtype float16"):
        build([str(docs)], out, progress=False, dtype="int8")
    with pytest.raises(cp.InvalidInputError, match="encoded with 'minilm'"):
        build([str(docs)], out, progress=False, model=str(tmp_path))


def test_ctrl_c_keeps_what_was_committed(docs, tmp_path, minilm):
    out = str(tmp_path / "i.h5")
    seen = {}

    def on_event(kind, info):
        if kind == "committed":
            raise KeyboardInterrupt
        if kind == "interrupted":
            seen.update(info)

    with pytest.raises(KeyboardInterrupt):
        build([str(docs)], out, encoder=minilm, progress=False, commit_pages=3, batch_size=3, on_event=on_event)
    assert seen["interrupted"] and seen["indexed"] == 3
    with cp.Index.open(out) as ix:
        assert len(ix) == 3
    rest = build([str(docs)], out, encoder=minilm, progress=False)
    assert rest.already_present == 3 and rest.indexed == 16


def test_encrypted_pdf_is_skipped_with_its_reason(tmp_path, minilm, monkeypatch):
    import pypdfium2 as pdfium

    folder = tmp_path / "enc"
    folder.mkdir()
    _pdf(folder / "locked.pdf", ["secret numbers"])
    _pdf(folder / "open.pdf", ["open text"])
    real = pdfium.PdfDocument

    def opening(path, *a, **k):  # what pdfium says for a PDF that needs a password
        if str(path).endswith("locked.pdf"):
            raise pdfium.PdfiumError("Failed to load document (PDFium: Incorrect password error).")
        return real(path, *a, **k)

    monkeypatch.setattr(pdfium, "PdfDocument", opening)
    report = build([str(folder)], str(tmp_path / "e.h5"), encoder=minilm, progress=False)
    assert report.indexed == 1 and report.skipped["locked.pdf"].startswith("encrypted PDF")
    with pytest.raises(PageError, match="locked.pdf: encrypted PDF"):
        build([str(folder)], str(tmp_path / "e2.h5"), encoder=minilm, progress=False, strict=True)


def test_pages_are_recorded_in_the_index_when_it_can(docs, tmp_path, minilm):
    out = str(tmp_path / "k.h5")
    build([str(docs)], out, encoder=minilm, progress=False)
    with cp.Index.open(out) as ix:
        if not hasattr(ix, "skipped"):
            pytest.skip("this index format has no record of skipped pages yet (Index.record_skipped)")
        assert ix.skipped["gaps.pdf#2"] == NO_TEXT
    # skipped pages are retried only when asked
    assert build([str(docs)], out, encoder=minilm, progress=False).skipped["gaps.pdf#2"] == NO_TEXT
    retry = build([str(docs)], out, encoder=minilm, progress=False, retry_skipped=True)
    assert retry.skipped["gaps.pdf#2"] == NO_TEXT and retry.indexed == 0
    assert os.path.exists(out)


def test_a_new_index_is_pruned_by_the_default_signal_and_records_it(tmp_path, minilm):
    from colprune.pipeline import DEFAULT_IMPORTANCE

    folder = tmp_path / "few"
    _pdf(folder.with_suffix(".pdf"), ["whales sing in the deep ocean and owls hunt at night", "glaciers carve valleys"])
    out = str(tmp_path / "d.h5")
    build([str(folder.with_suffix(".pdf"))], out, model="minilm", pruner="adaptive", progress=False)
    with cp.Index.open(out) as ix:
        assert DEFAULT_IMPORTANCE == "indegree" and ix.pruner_config["signal"] == "indegree"
        assert ix.pruner_config["name"] == "adaptive" and len(ix) == 2
    # appending by another signal is refused before anything is written; the index's own is used
    with pytest.raises(cp.InvalidInputError, match="'indegree' signal"):
        build([str(folder.with_suffix(".pdf"))], out, encoder=minilm, progress=False, upsert=True, overwrite=False,
              id_root=str(tmp_path / "elsewhere"))
    # a pre-loaded encoder prunes by its own signal, and that is what the index records
    build([str(folder.with_suffix(".pdf"))], str(tmp_path / "c.h5"), encoder=minilm, pruner="adaptive", progress=False)
    with cp.Index.open(tmp_path / "c.h5") as ix:
        assert ix.pruner_config["signal"] == "cls"
    # a full index stores (and records) the importance too, and what derives from it keeps the record
    build([str(folder.with_suffix(".pdf"))], str(tmp_path / "n.h5"), model="minilm", pruner="none", progress=False)
    with cp.Index.open(tmp_path / "n.h5") as ix:
        assert ix.pruner_config["signal"] == "indegree"
        with ix.derive(str(tmp_path / "p.h5"), "adaptive", k=0.0) as small:
            assert small.pruner_config["signal"] == "indegree" and small.pruner_config["name"] == "adaptive"


def test_freed_memory_is_handed_back_without_error():
    from colprune.pipeline.memory import release_freed_memory

    release_freed_memory()
    release_freed_memory()  # the second call reuses the looked-up function (or the no-op)


def test_ctrl_c_keeps_the_skip_records_of_pages_already_read(docs, tmp_path, minilm):
    out = str(tmp_path / "i.h5")

    def on_event(kind, info):
        if kind == "committed" and info["indexed"] >= 18:  # past the blank page and the broken file
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build([str(docs)], out, encoder=minilm, progress=False, commit_pages=3, batch_size=3, on_event=on_event)
    with cp.Index.open(out) as ix:
        assert ix.skipped.get("gaps.pdf#2") == NO_TEXT  # not encoded again by the next run


def test_a_callers_own_encoder_needs_only_pages_and_batch_size(tmp_path, minilm):
    class Plain:  # duck-typed: no signals= parameter, no importance attribute
        name, dim, input_kind = "plain", minilm.dim, minilm.input_kind

        def encode_pages(self, pages, batch_size=8):
            return minilm.encode_pages(pages, batch_size=batch_size)

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a note about glaciers and ice ages")
    report = build([str(tmp_path / "d")], str(tmp_path / "p.h5"), encoder=Plain(), progress=False)
    assert report.indexed == 1


def test_pages_per_second_leaves_out_the_model_load(tmp_path, minilm, monkeypatch):
    import time

    import colprune.encoders

    def slow_load(model, **kwargs):
        time.sleep(0.3)
        return minilm

    monkeypatch.setattr(colprune.encoders, "load_encoder", slow_load)
    (tmp_path / "d").mkdir()
    for i in range(3):
        (tmp_path / "d" / f"{i}.txt").write_text(f"note {i} about glaciers and ice ages")
    events = []
    report = build([str(tmp_path / "d")], str(tmp_path / "p.h5"), model="minilm", progress=False,
                   on_event=lambda kind, info: events.append(kind))
    assert report.indexed == 3 and 0.3 <= report.load_seconds < report.seconds and "loading" in events
    assert report.pages_per_second == pytest.approx(3 / (report.seconds - report.load_seconds))
    assert f"(model load {report.load_seconds:.1f} s; " in report.summary()
    assert report.to_dict()["load_seconds"] == report.load_seconds
    # a caller's own encoder: nothing loaded, the plain rate
    again = build([str(tmp_path / "d")], str(tmp_path / "q.h5"), encoder=minilm, progress=False)
    assert again.load_seconds == 0 and "model load" not in again.summary()


def test_summary_names_the_load_and_the_encoding_rate():
    report = BuildReport(output="pages.h5", indexed=9, seconds=61.9, load_seconds=50.1)
    assert report.summary() == "pages.h5: indexed 9 pages in 61.9 s (model load 50.1 s; 0.76 pages/s encoding)"
    assert BuildReport(output="x.h5", indexed=4, seconds=2.0).summary() == "x.h5: indexed 4 pages in 2.0 s (2.00 pages/s)"
