"""The teacher's side of distillation: every training text encoded as a query by the teacher,
with the student's token ids beside each row (:func:`teacher_targets`), kept as CSR arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..encoders.base import Encoder
from ..encoders.student import QueryFormat, query_format_of
from ..errors import InvalidInputError

__all__ = ["TeacherTargets", "teacher_targets"]


@dataclass
class TeacherTargets:
    """The teacher's query token vectors of every training text, CSR: row ``offsets[i]:offsets[i+1]``
    are text ``i``'s tokens, ``ids`` the matching token ids (both ``(n_tokens,)``/``(n_tokens, dim)``)."""

    texts: list[str]
    ids: np.ndarray  # (n_tokens,) int32
    vectors: np.ndarray  # (n_tokens, dim) float16, L2-normalised
    offsets: np.ndarray  # (n_texts + 1,) int64
    teacher: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, rows: Sequence[int]) -> "TeacherTargets":
        rows = list(rows)
        lo, hi = self.offsets[:-1][rows], self.offsets[1:][rows]
        take = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if rows else np.zeros(0, np.int64)
        return TeacherTargets([self.texts[i] for i in rows], self.ids[take], self.vectors[take],
                              np.r_[0, np.cumsum(hi - lo)].astype(np.int64), self.teacher)

    def save(self, path: str) -> None:
        tmp = path + ".tmp.npz"
        np.savez(tmp, ids=self.ids, vectors=self.vectors, offsets=self.offsets, texts=np.array(self.texts),
                 teacher=np.array(self.teacher))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "TeacherTargets":
        with np.load(path, allow_pickle=False) as z:
            return cls(list(z["texts"]), z["ids"], z["vectors"], z["offsets"], str(z["teacher"]))


def teacher_targets(teacher: Encoder, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False,
                    tokenizer=None, fmt: QueryFormat | None = None) -> TeacherTargets:
    """Encode every text as a query with the teacher; the student's token ids beside each row."""
    from tqdm.auto import tqdm

    if tokenizer is None or fmt is None:
        tokenizer, fmt = query_format_of(teacher)
    ids_all, vecs, lengths = [], [], []
    chunk = max(batch_size * 16, 1)
    with tqdm(total=len(texts), desc="teacher", unit="text", disable=not progress) as bar:
        for lo in range(0, len(texts), chunk):
            part = list(texts[lo : lo + chunk])
            ids = fmt.ids(tokenizer, part)
            out = teacher.encode_queries(part, batch_size=batch_size)
            for t, i, v in zip(part, ids, out):
                if len(i) != v.shape[0]:
                    raise InvalidInputError(f"the teacher gave {v.shape[0]} vectors for {len(i)} tokens of {t!r:.60}: "
                                            "its query tokens cannot be reproduced")
                ids_all.append(np.asarray(i, np.int32))
                vecs.append(v.astype(np.float16))
                lengths.append(len(i))
            bar.update(len(part))
    return TeacherTargets(list(texts), np.concatenate(ids_all), np.concatenate(vecs),
                          np.r_[0, np.cumsum(lengths)].astype(np.int64), teacher.name)
