"""Student query encoders (issue 16): save/load, token alignment with the teacher, teacher checks,
resumable distillation, the CLI. The teacher is the tiny config-built ColQwen2 (the same code
path as any teacher), plus cheap checks on the real MiniLM."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from colprune import Index
from colprune.cli import main
from colprune.distill import cut_sentences, distill, page_means, read_texts, teacher_targets, training_texts
from colprune.encoders import StudentQueryEncoder, load_encoder
from colprune.encoders.student import (
    StudentConfig,
    StudentModel,
    check_alignment,
    query_format_of,
    save_student,
    teacher_query_ids,
)
from colprune.errors import SettingsMismatchError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import save_tiny_colqwen2  # noqa: E402

TEXTS = ["who is the figure", "what is a plot", "where is the image", "describe the plot of a figure",
         "what is in the image", "who and what", "a plot of an image", "the figure of the plot in a query",
         "where to plot the figure", "an image of a plot", "what is the query", "is a figure an image"] * 2
SMALL = dict(hidden=16, heads=2, layers=1, intermediate=32, embed_rank=8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny ColQwen2 teacher: (path, encoder)."""
    path = save_tiny_colqwen2(str(tmp_path_factory.mktemp("tiny") / "colqwen2"))
    return path, load_encoder(path)


def _config(teacher, **over):
    from colprune.distill import default_config

    tok, _ = query_format_of(teacher)
    return default_config(teacher, tok, **{**SMALL, **over})


def _distill(teacher, out, **kw):
    return distill(teacher, TEXTS, str(out), config=_config(teacher), progress=False,
                   **{"epochs": 2, "batch_size": 8, "log": lambda m: None, **kw})


def test_training_text_from_every_source(tmp_path):
    (tmp_path / "notes.txt").write_text("how tall is the eiffel tower\n\nwho wrote hamlet\n")
    with open(tmp_path / "corpus.jsonl", "w") as f:
        f.write(json.dumps({"_id": "1", "title": "Rivers", "text": "The Danube flows through Vienna. It is long!"}) + "\n")
    with open(tmp_path / "queries.jsonl", "w") as f:
        f.write(json.dumps({"_id": "q", "text": "which river flows through vienna"}) + "\n")
    got = read_texts([str(tmp_path / "notes.txt"), str(tmp_path / "queries.jsonl")])
    assert got == [("how tall is the eiffel tower", "query"), ("who wrote hamlet", "query"),
                   ("which river flows through vienna", "query")]
    # a folder gives its corpus.jsonl, never its queries.jsonl (held-out test queries stay out)
    texts = training_texts([str(tmp_path)], spans=False)
    assert sorted(texts) == ["It is long!", "The Danube flows through Vienna."]  # "Rivers." is too short
    long = " ".join(f"w{i}" for i in range(70)) + ". Is this a question? Yes."
    pieces = cut_sentences(long, spans=False)
    assert [len(p.split()) for p in pieces] == [32, 32, 6, 4]  # cut at 32 words; "Yes." is too short
    assert len(training_texts([str(tmp_path)], fraction=0.5, spans=False)) == 1


def test_pdf_folders_give_their_text_layer(tmp_path):
    from colprune.demo import write_demo_pdfs

    write_demo_pdfs(str(tmp_path / "pdfs"))
    texts = training_texts([str(tmp_path / "pdfs")])
    assert len(texts) > 20 and any("thermometer" in t for t in texts)


def test_student_tokens_line_up_with_the_teacher(tiny):
    _, teacher = tiny
    tok, fmt = query_format_of(teacher)
    check_alignment(teacher, tok, fmt, TEXTS)
    assert fmt.ids(tok, TEXTS[:3]) == teacher_query_ids(teacher, TEXTS[:3])
    lengths = [v.shape[0] for v in teacher.encode_queries(TEXTS[:3])]
    assert lengths == [len(i) for i in fmt.ids(tok, TEXTS[:3])]


def test_save_load_round_trip_and_alignment(tiny, tmp_path):
    path, teacher = tiny
    report = _distill(teacher, tmp_path / "student")
    assert report.epochs == 2 and len(report.held_out) == 2 and report.parameters > 0
    student = load_encoder(str(tmp_path / "student"))
    assert isinstance(student, StudentQueryEncoder) and student.teacher == path and student.dim == teacher.dim
    cfg = json.loads((tmp_path / "student" / "config.json").read_text())
    assert cfg["model_type"] == "colprune-student" and cfg["config"]["layers"] == 1 and cfg["training"]["loss"] == "align"
    assert (tmp_path / "student" / "model.safetensors").exists() and not (tmp_path / "student.partial").exists()
    q = ["what is the figure", "who"]
    vs, vt = student.encode_queries(q), teacher.encode_queries(q)
    assert [v.shape for v in vs] == [v.shape for v in vt]  # one vector per teacher token
    assert all(np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5) for v in vs)
    assert all(np.allclose(v, student.encode_queries([t])[0], atol=1e-5) for v, t in zip(vs, q))  # unpadded path
    # saved again from the loaded model: the same vectors
    save_student(str(tmp_path / "again"), student.model, student.tokenizer, student.fmt)
    again = load_encoder(str(tmp_path / "again")).encode_queries(q)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(vs, again))
    single = student.encode_single(q)
    assert single.shape == (2, teacher.dim) and np.allclose(np.linalg.norm(single, axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="encodes queries only"):
        student.encode_pages(["a page"])
    with pytest.raises(FileExistsError, match="--overwrite"):
        _distill(teacher, tmp_path / "student")


def test_resume_from_a_checkpoint(tiny, tmp_path):
    _, teacher = tiny
    straight = _distill(teacher, tmp_path / "straight")

    def stop_after_epoch_1(msg: str) -> None:
        if msg.startswith("epoch 1:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(teacher, TEXTS, str(tmp_path / "resumed"), config=_config(teacher), progress=False,
                log=stop_after_epoch_1, epochs=2, batch_size=8)
    assert (tmp_path / "resumed.partial" / "checkpoint.pt").exists() and not (tmp_path / "resumed").exists()
    msgs: list[str] = []
    report = _distill(teacher, tmp_path / "resumed", log=msgs.append)
    assert report.resumed_from_step == straight.steps // 2 and any(m.startswith("resuming") for m in msgs)
    assert report.held_out == pytest.approx(straight.held_out, abs=1e-5)
    a = load_encoder(str(tmp_path / "straight")).encode_queries(TEXTS[:4])
    b = load_encoder(str(tmp_path / "resumed")).encode_queries(TEXTS[:4])
    assert all(np.allclose(x, y, atol=1e-5) for x, y in zip(a, b))
    # other settings do not resume the work of these
    with pytest.raises(KeyboardInterrupt):
        distill(teacher, TEXTS, str(tmp_path / "third"), config=_config(teacher), progress=False,
                log=stop_after_epoch_1, epochs=2, batch_size=8)
    with pytest.raises(ValueError, match="other settings"):
        _distill(teacher, tmp_path / "third", lr=1e-4)


def test_infonce_loss_trains_too(tiny, tmp_path):
    _, teacher = tiny
    report = _distill(teacher, tmp_path / "nce", loss="infonce", max_steps=3)
    assert report.loss == "infonce" and report.steps == 3


def test_a_student_of_another_teacher_is_refused(tiny, tmp_path):
    path, teacher = tiny
    _distill(teacher, tmp_path / "student", epochs=1)
    student = load_encoder(str(tmp_path / "student"))
    rng = np.random.default_rng(0)
    with Index.create(str(tmp_path / "other.h5"), teacher.dim, encoder="minilm") as ix:
        ix.add(["p1"], [rng.standard_normal((5, teacher.dim)).astype(np.float32)], pruner="none")
    with Index.open(str(tmp_path / "other.h5")) as ix:
        with pytest.raises(SettingsMismatchError, match=r"built with 'minilm', but the student .* distilled from"):
            student.check_index(ix)
    with Index.create(str(tmp_path / "mine.h5"), teacher.dim, encoder=path) as ix:
        ix.add(["p1", "p2"], [rng.standard_normal((n, teacher.dim)).astype(np.float32) for n in (5, 7)], pruner="none")
    with Index.open(str(tmp_path / "mine.h5")) as ix:
        student.check_index(ix)
        assert [h.id for h in student.search(ix, ["what is the figure"], k=2)[0]] != []


def test_cli_distill_then_search_with_the_student(tiny, tmp_path, capsys):
    path, teacher = tiny
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    out = str(tmp_path / "student")
    args = ["distill-queries", "--teacher", path, "--texts", str(tmp_path / "texts.txt"), "-o", out, "--epochs", "1",
            "--batch", "8", "--hidden", "16", "--heads", "2", "--layers", "1", "--intermediate", "32",
            "--embed-rank", "8", "-q"]
    assert main(args) == 0
    assert "held-out alignment" in capsys.readouterr().out
    assert main(args) == 7  # OUTPUT exists
    assert "--overwrite" in capsys.readouterr().err
    rng = np.random.default_rng(1)
    with Index.create(str(tmp_path / "pages.h5"), teacher.dim, encoder=path) as ix:
        ix.add(["p1", "p2"], [rng.standard_normal((n, teacher.dim)).astype(np.float32) for n in (5, 7)], pruner="none")
    assert main(["search", str(tmp_path / "pages.h5"), "what is the figure", "--query-encoder", out, "--json", "-q"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [len(r["hits"]) for r in hits] == [2]
    with Index.create(str(tmp_path / "other.h5"), teacher.dim, encoder="minilm") as ix:
        ix.add(["p1"], [rng.standard_normal((5, teacher.dim)).astype(np.float32)], pruner="none")
    assert main(["search", str(tmp_path / "other.h5"), "what", "--query-encoder", out, "-q"]) == 6
    err = capsys.readouterr().err
    assert "was built with 'minilm'" in err and "distill-queries --teacher minilm" in err
    assert main(["search", str(tmp_path / "pages.h5"), "what", "--query-encoder", out, "--model", path]) == 2
    assert main(["search", str(tmp_path / "pages.h5"), "what", "--query-encoder", str(tmp_path / "nope")]) == 3


def test_study_with_a_student(tiny, tmp_path, capsys):
    from colprune.study import run_study

    path, teacher = tiny
    folder = shared_path("data", "pages", "arxivqa")
    student = str(tmp_path / "student")
    _distill(teacher, tmp_path / "student", epochs=1)
    args = ["study", "--dataset", str(folder), "--encoder", path, "--query-encoder", student, "--methods", "random",
            "--budgets", "0.5", "--codecs", "float16", "--out", str(tmp_path / "out"), "-q"]
    assert main(args) == 0
    with open(tmp_path / "out" / "results.csv") as f:
        methods = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    assert methods == ["none", "meanpool", "random", "default"]  # the default always runs
    assert "queries from" in (tmp_path / "out" / "results.md").read_text()
    assert main([*args[:4], "minilm", *args[5:]]) == 6  # pages by minilm, a student of the tiny model
    assert "pass --encoder" in capsys.readouterr().err
    with pytest.raises(SettingsMismatchError, match="distilled from"):
        run_study(str(folder), "minilm", str(tmp_path / "out2"), methods=["random"], budgets=[0.5], progress=False,
                  log=lambda m: None, query_encoder=student)


def test_minilm_student_with_every_teacher_layer_is_the_teacher(tmp_path):
    """The student's architecture is BERT's: all six MiniLM layers and a full-rank table give the
    teacher's vectors; the default student is under a third of MiniLM's parameters."""
    from colprune.distill import default_config, init_from_teacher
    from colprune.encoders.student import n_parameters

    teacher = load_encoder("minilm")
    tok, fmt = query_format_of(teacher)
    texts = ["who invented the mercury thermometer", "rivers " * 600]  # the second is truncated to 512 tokens
    check_alignment(teacher, tok, fmt, texts)
    model = StudentModel(default_config(teacher, tok, layers=6, embed_rank=384, intermediate=1536))
    assert init_from_teacher(model, teacher) == [0, 1, 2, 3, 4, 5]
    save_student(str(tmp_path / "copy"), model, tok, fmt)
    got = load_encoder(str(tmp_path / "copy")).encode_queries(texts)
    want = teacher.encode_queries(texts)
    assert [g.shape for g in got] == [w.shape for w in want] and want[1].shape[0] == 512
    assert min(float((g * w).sum(axis=1).min()) for g, w in zip(got, want)) > 0.9999
    small = StudentModel(default_config(teacher, tok))
    assert n_parameters(small) <= n_parameters(teacher.model) / 3
    assert isinstance(small.cfg, StudentConfig) and init_from_teacher(small, teacher) == [4, 5]


def test_page_means_are_unit_vectors(tmp_path):
    rng = np.random.default_rng(2)
    with Index.create(str(tmp_path / "p.h5"), 8, encoder="minilm") as ix:
        ix.add(["a", "b"], [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 4)], pruner="none")
    with Index.open(str(tmp_path / "p.h5")) as ix:
        ids, m = page_means(ix)
    assert ids == ["a", "b"] and m.shape == (2, 8) and np.allclose(np.linalg.norm(m, axis=1), 1, atol=1e-5)


def test_teacher_targets_are_csr(tiny):
    _, teacher = tiny
    t = teacher_targets(teacher, TEXTS[:5])
    assert len(t) == 5 and t.offsets[-1] == t.vectors.shape[0] == t.ids.shape[0]
    sub = t.subset([1, 3])
    assert sub.texts == [TEXTS[1], TEXTS[3]]
    assert np.array_equal(sub.vectors[: sub.offsets[1]], t.vectors[t.offsets[1]:t.offsets[2]])
