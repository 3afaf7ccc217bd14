"""A page build in micro-batches: Ctrl-C keeps every finished encoder call, commits come at the page or
second limit inside what used to be one encoder batch, the writer lock is taken before anything is read,
and a build that cannot index a page ends before the model loads, naming each file's reason."""

import os
import signal
import types

import numpy as np
import pytest
from conftest import write_pdf

import colprune as cp
from colprune.encoders import EncodedPage, Encoder
from colprune.errors import LockedError
from colprune.pipeline import build, readable_pages, why_nothing
from colprune.pipeline.batching import MicroBatches


class Fake(Encoder):
    """A cheap encoder: a few vectors per page; ``on_call(n)`` runs before call n (1-based) is encoded."""

    name, dim, importance = "fake", 8, "indegree"

    def __init__(self, input_kind="text", on_call=None):
        self.input_kind = input_kind
        self.on_call = on_call or (lambda n: None)
        self.calls: list[int] = []

    def encode_pages(self, pages, *, batch_size=8, progress=False, signals=None):
        self.calls.append(len(pages))
        self.on_call(len(self.calls))
        rng = np.random.default_rng(len(self.calls))
        out = []
        for _ in pages:
            v = rng.standard_normal((5, self.dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            out.append(EncodedPage(vectors=v, patch_mask=np.ones(5, bool), importance=rng.random(5).astype(np.float32)))
        return out

    def encode_queries(self, texts, *, batch_size=32):
        return [np.ones((2, self.dim), np.float32) / np.sqrt(self.dim) for _ in texts]


def _notes(folder, n=10):
    folder.mkdir()
    for i in range(n):
        (folder / f"n{i:02d}.txt").write_text(f"note {i}: the river {i} flows past the town {i}")
    return folder


def _pdf(path, pages):
    write_pdf(path, pages, size=(4, 5))


def _interrupt(how):
    def on_call(n):
        if n == 3:
            if how == "signal":
                signal.raise_signal(signal.SIGINT)  # Python's handler raises KeyboardInterrupt here
            raise KeyboardInterrupt
    return on_call


@pytest.mark.parametrize("how", ["signal", "raise"])
def test_ctrl_c_mid_batch_keeps_the_earlier_micro_batches(tmp_path, how):
    notes = _notes(tmp_path / "notes")
    out = str(tmp_path / "i.h5")
    seen = {}
    enc = Fake(on_call=_interrupt(how))
    with pytest.raises(KeyboardInterrupt):
        build([str(notes)], out, encoder=enc, progress=False, batch_size=2, commit_pages=32,
              on_event=lambda kind, info: seen.update(info) if kind == "interrupted" else None)
    # two calls of two pages were encoded before the third was interrupted: both committed
    assert seen["interrupted"] and seen["indexed"] == 4
    with cp.Index.open(out) as ix:
        assert sorted(ix.ids) == ["n00.txt", "n01.txt", "n02.txt", "n03.txt"]
    rest = build([str(notes)], out, encoder=Fake(), progress=False)
    assert rest.already_present == 4 and rest.indexed == 6


def test_the_bar_and_events_move_per_call_by_its_pages(tmp_path, monkeypatch):
    import tqdm.auto

    steps: list[int] = []

    class Bar:
        def __init__(self, *a, **k):
            pass

        def update(self, n=1):
            steps.append(n)

        def set_postfix(self, *a, **k):
            pass

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    notes = _notes(tmp_path / "notes")
    events = []
    build([str(notes)], str(tmp_path / "b.h5"), encoder=Fake(), batch_size=3,
          on_event=lambda kind, info: events.append(info["pages"]) if kind == "encoded" else None)
    assert steps == events == [3, 3, 3, 1]


def test_a_time_limit_commit_comes_inside_what_used_to_be_one_batch(tmp_path, monkeypatch):
    from colprune.pipeline import writer as writer_module

    now = [0.0]
    monkeypatch.setattr(writer_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))

    def tick(n):  # each encoder call takes 20 s on the fake clock
        now[0] += 20.0

    notes = _notes(tmp_path / "notes")
    commits = []
    report = build([str(notes)], str(tmp_path / "t.h5"), encoder=Fake(on_call=tick), progress=False, batch_size=2,
                   commit_pages=32, commit_seconds=30.0,
                   on_event=lambda kind, info: commits.append(info["pages"]) if kind == "committed" else None)
    assert report.indexed == 10 and commits == [4, 4, 2]  # at 40 s, 80 s, and the end


def test_micro_batches_follow_a_token_budget():
    class Counting:
        max_batch_tokens = 250

        def page_tokens(self, text):
            return len(text)

    mb = MicroBatches(Counting())
    calls = []
    for i, text in enumerate(["a" * 100, "b" * 100, "c" * 100, "d" * 400, "e" * 10]):
        calls += mb.add(i, text)
    calls.append(mb.take())
    assert [[i for i, _ in c] for c in calls] == [[0, 1], [2], [3], [4]]
    assert MicroBatches(Fake()).max_pages == 4 and MicroBatches(Fake(), 7).max_pages == 7


def test_a_second_build_is_refused_at_once(tmp_path, monkeypatch):
    import colprune.encoders

    notes = _notes(tmp_path / "notes")
    out = str(tmp_path / "race.h5")
    second: dict = {}

    def refuse(*a, **k):
        raise AssertionError("the second build must not load a model")

    def race(n):  # while the first build encodes its first call, a second one starts
        if n == 1:
            monkeypatch.setattr(colprune.encoders, "load_encoder", refuse)
            events = []
            with pytest.raises(LockedError, match="race.h5 is being written by another process") as e:
                build([str(notes)], out, model="minilm", progress=False, on_event=lambda k, i: events.append(k))
            second.update(error=str(e.value), events=events)

    report = build([str(notes)], out, encoder=Fake(on_call=race), progress=False)
    assert report.indexed == 10 and second["events"] == []  # nothing read, nothing loaded
    assert "another -o" in second["error"]


def test_the_refusal_names_the_other_writers_pid_when_the_lock_records_it(tmp_path, monkeypatch):
    out = tmp_path / "held.h5"
    cp.Index.create(out, dim=8).close()

    def held(cls, path, mode="r", **kw):
        raise LockedError(f"{path} is open for writing by another process (pid 4321 on box); close it there",
                          holder="pid 4321 on box")

    monkeypatch.setattr(cp.Index, "open", classmethod(held))
    with pytest.raises(LockedError, match=r"^.*held.h5 is being written by another process \(pid 4321 on box\): "):
        build([str(_notes(tmp_path / "notes"))], str(out), encoder=Fake(), progress=False)


def test_an_interrupt_before_the_first_commit_leaves_nothing(tmp_path):
    notes = _notes(tmp_path / "notes")
    out = tmp_path / "none.h5"

    def stop(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build([str(notes)], str(out), encoder=Fake(on_call=stop), progress=False)
    assert not out.exists()  # the new index created (and locked) at the start is gone
    assert build([str(notes)], str(out), encoder=Fake(), progress=False).indexed == 10
    with pytest.raises(KeyboardInterrupt):  # an index --overwrite would replace stays as it was
        build([str(notes)], str(out), encoder=Fake(on_call=stop), progress=False, overwrite=True)
    with cp.Index.open(out) as ix:
        assert len(ix) == 10
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_nothing_indexable_ends_before_the_model_with_each_files_reason(tmp_path, monkeypatch):
    import pypdfium2 as pdfium
    from PIL import Image

    import colprune.encoders

    folder = tmp_path / "bad"
    folder.mkdir()
    _pdf(folder / "locked.pdf", ["secret"])
    _pdf(folder / "scan.pdf", ["", ""])
    _pdf(folder / "whole.pdf", ["some text"])
    raw = (folder / "whole.pdf").read_bytes()
    (folder / "trunc.pdf").write_bytes(raw[: len(raw) // 2])
    (folder / "whole.pdf").unlink()
    Image.new("RGB", (32, 32), "white").save(folder / "photo.png")
    real = pdfium.PdfDocument

    def opening(path, *a, **k):
        if str(path).endswith("locked.pdf"):
            raise pdfium.PdfiumError("Failed to load document (PDFium: Incorrect password error).")
        return real(path, *a, **k)

    def refuse(*a, **k):
        raise AssertionError("the model must not load when no page can be indexed")

    monkeypatch.setattr(pdfium, "PdfDocument", opening)
    monkeypatch.setattr(colprune.encoders, "load_encoder", refuse)
    out = tmp_path / "bad.h5"
    with pytest.raises(cp.InvalidInputError) as e:
        build([str(folder)], str(out), model="minilm", progress=False)
    msg = str(e.value)
    assert msg.startswith("no page could be indexed: locked.pdf: encrypted PDF (needs a password); ")
    assert f"trunc.pdf: damaged PDF (truncated at byte {len(raw) // 2:,}" in msg
    assert "scan.pdf: 2 pages without a text layer" in msg and "photo.png: an image, no text layer" in msg
    assert msg.endswith("(scans and images need an image encoder: --model vidore/colqwen2-v1.0-hf)")
    assert not out.exists()
    (folder / "scan.pdf").unlink()
    (folder / "photo.png").unlink()
    with pytest.raises(cp.InvalidInputError) as e:  # no scan: no hint about scans
        build([str(folder)], str(out), model="minilm", progress=False)
    assert "image encoder" not in str(e.value) and "encrypted" in str(e.value)


def test_readable_pages_are_checked_cheaply_per_file(tmp_path):
    from colprune.pipeline import NO_TEXT, list_pages

    folder = tmp_path / "d"
    folder.mkdir()
    _pdf(folder / "cover.pdf", ["", "text on the second page", ""])
    _pdf(folder / "scan.pdf", ["", ""])
    (folder / "empty.txt").write_text("  \n")
    jobs = list_pages([str(folder)])
    skipped: dict = {}
    kept = readable_pages(jobs, "text", skipped=skipped)
    assert [j.id for j in kept] == ["cover.pdf#1", "cover.pdf#2", "cover.pdf#3"]  # blank pages: found by the reader
    assert skipped == {"empty.txt": "empty text file", "scan.pdf#1": NO_TEXT, "scan.pdf#2": NO_TEXT}
    assert len(readable_pages(jobs, "image")) == 5 and len(readable_pages(jobs, None)) == 6
    assert why_nothing({}) == "no page could be indexed: the inputs hold no PDF, image or .txt/.md file"
    from colprune.pipeline.pages import NOT_TEXT

    assert why_nothing({"a.png": NOT_TEXT, "b.png": NOT_TEXT, "c.pdf": "encrypted PDF (needs a password)"}) == (
        "no page could be indexed: 2 files: an image, no text layer (a.png, b.png); c.pdf: encrypted PDF (needs a "
        "password) (scans and images need an image encoder: --model vidore/colqwen2-v1.0-hf)")


def test_source_is_relative_to_the_id_root_and_path_is_absolute(tmp_path, monkeypatch):
    notes = _notes(tmp_path / "extra", n=3)
    out = str(tmp_path / "s.h5")
    monkeypatch.chdir(tmp_path)
    build(["./extra/"], out, encoder=Fake(), progress=False)
    with cp.Index.open(out, mode="a") as ix:
        meta = ix.get("n01.txt").metadata
        assert meta["source"] == "n01.txt" and os.path.isabs(meta["path"]) and "text" not in meta
        assert os.path.samefile(meta["path"], notes / "n01.txt")
        hits = ix.search([np.ones((2, 8), np.float32)], k=5, where={"source": "n01.txt"})[0]
        assert [h.id for h in hits] == ["n01.txt"]
        assert ix.delete(where=cp.index.parse_where('{"source": "n02.txt"}')) == 1
    # the same folder named another way gives the same ids and sources
    build([str(notes)], out, encoder=Fake(), progress=False)
    with cp.Index.open(out) as ix:
        assert ix.get("n02.txt").metadata["source"] == "n02.txt" and len(ix) == 3


def test_store_text_keeps_each_pages_text(tmp_path):
    from colprune.pipeline import TEXT_LIMIT

    folder = tmp_path / "d"
    folder.mkdir()
    _pdf(folder / "a.pdf", ["whales sing in the deep ocean", "owls hunt at night"])
    (folder / "long.txt").write_text("x" * (TEXT_LIMIT + 5))
    out = str(tmp_path / "t.h5")
    build([str(folder)], out, encoder=Fake(), progress=False, store_text=True)
    with cp.Index.open(out) as ix:
        assert "owls hunt at night" in ix.get("a.pdf#2").metadata["text"]
        long = ix.get("long.txt").metadata
        assert len(long["text"]) == TEXT_LIMIT and long["text_truncated"] is True
    # an image encoder stores the PDF page's text layer, an image file's text is ""
    from PIL import Image

    Image.new("RGB", (32, 32), "white").save(folder / "p.png")
    (folder / "long.txt").unlink()
    build([str(folder)], str(tmp_path / "v.h5"), encoder=Fake("image"), progress=False, store_text=True)
    with cp.Index.open(tmp_path / "v.h5") as ix:
        assert "whales" in ix.get("a.pdf#1").metadata["text"] and ix.get("p.png").metadata["text"] == ""
