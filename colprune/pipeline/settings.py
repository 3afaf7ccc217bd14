"""What a build may add to an existing index: THE settings check, the signal check, the model checks.

The one-machine build, embedding files, the CLI and the Ray build call these, so an index
refuses mismatched pages with one wording wherever they come from.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from ..errors import InvalidInputError, ModelLoadError, SettingsMismatchError, UsageError

__all__ = ["DEFAULT_IMPORTANCE", "check_settings", "held_settings", "check_signal", "same_signal", "check_model",
           "model_dim", "model_kind", "kind_signals"]

#: The importance signal a new index is pruned by unless told otherwise: the attention each
#: patch/token *receives* in the last layer (mean over heads and over the other tokens). It sets each
#: page's count (DocPruner's mean + k*std) for the default pruner, adaptive-cluster
#: (docs/study-financebench.md, issue 23).
DEFAULT_IMPORTANCE = "indegree"


def held_settings(index: Any) -> dict[str, Any]:
    """What an open index (or sharded collection) holds: codec, dim, encoder, pruner, merged, rerank, signals."""
    return {"codec": index.codec, "dim": index.dim, "encoder": index.encoder, "pruner": index.pruner_config,
            "merged": index.merged, "rerank": index.has_rerank, "signals": list(index.signal_names)}


def _problems(output: str, held: dict[str, Any], *, dtype: str | None, pruner: Any, encoder: str | None,
              dim: int | None, rerank: bool | None) -> tuple[list[str], list[str]]:
    problems, fixes = [], []
    codec = held["codec"]
    if dtype is not None and dtype != codec:
        problems.append(f"{codec} vectors (you asked for --dtype {dtype})")
        fixes.append(f"leave out --dtype (or give --dtype {codec}) to append {codec} vectors, or convert a copy later "
                     f"with `colprune prune {output} NEW.h5 --pruner none --dtype {dtype}`")
    if encoder is not None and held["encoder"] and encoder != held["encoder"]:
        problems.append(f"pages encoded with {held['encoder']!r} (you asked for {encoder!r})")
        fixes.append(f"leave out --model (or --encoder) to use the index's ({held['encoder']})")
    if dim is not None and dim != held["dim"]:
        problems.append(f"dim {held['dim']} (your vectors have dim {dim})")
    stored = held["pruner"]
    if pruner is not None and stored is not None:
        base = {k: stored[k] for k in ("name", "params") if k in stored}
        if base != pruner.config():
            problems.append(f"pages pruned with {json.dumps(base)} (you asked for {json.dumps(pruner.config())})")
            fixes.append(f"leave out the pruning options to use the index's pruner (--pruner {base.get('name')} "
                         f"with {json.dumps(base.get('params', {}))})")
    if pruner is not None and pruner.merges and not held["merged"]:
        problems.append(f"no merged vectors (--pruner {pruner.name} merges)")
    if rerank is False and held["rerank"]:
        problems.append("a float16 rerank copy (you asked for --no-rerank)")
        fixes.append(f"drop the copy afterwards with `colprune repack {output} --no-rerank`")
    return problems, fixes


def check_settings(index_or_path: Any, *, dtype: str | None = None, pruner: Any = None, encoder: str | None = None,
                   dim: int | None = None, rerank: bool | None = None, shown: str | None = None) -> dict[str, Any]:
    """THE settings check: what an existing index holds, or why the build's settings do not fit it.

    Parameters
    ----------
    index_or_path : an open index (or sharded collection), or the path of an index to open read-only
    dtype : the codec the build asks for (None: any)
    pruner : the :class:`~colprune.pruning.Pruner` the build asks for (None: the index's)
    encoder : the model name the build encodes with (None: any)
    dim : the dimension of the build's vectors (None: unknown)
    rerank : False when the build asks for no float16 rerank copy (binary only); None: any
    shown : the index's path as the user gave it, for the messages (default: the index's own path)

    Returns
    -------
    dict : :func:`held_settings` of the index.

    Raises
    ------
    UsageError
        ``rerank=False`` for an index whose codec is not binary.
    SettingsMismatchError
        One line naming everything that differs, and how to add to the index instead.
    """
    if isinstance(index_or_path, (str, os.PathLike)):
        from ..index import Index

        output = os.fspath(index_or_path)
        with Index.open(output) as ix:
            held = held_settings(ix)
    else:
        output, held = shown or str(index_or_path.path), held_settings(index_or_path)
    if rerank is False and held["codec"] != "binary":
        raise UsageError(f"--no-rerank applies to binary indexes; {output} holds {held['codec']} vectors")
    problems, fixes = _problems(output, held, dtype=dtype, pruner=pruner, encoder=encoder, dim=dim, rerank=rerank)
    if problems:
        new = f"write a new index (another -o, or --overwrite to replace {output})"
        advice = ("To add to it: " + "; ".join(fixes) + f"; or {new}") if fixes else new[0].upper() + new[1:]
        raise SettingsMismatchError(f"{output} holds " + "; ".join(problems) + ". " + advice)
    return held


def same_signal(name: str) -> str:
    """One name for the global-token signal ("cls" for text encoders, "eos" for image encoders)."""
    return "eos" if name == "cls" else name


def check_signal(output: str, held: str | None, chosen: str | None) -> None:
    """Refuse to add pages pruned by ``chosen`` to ``output``, whose pages were pruned by ``held``."""
    if held is not None and chosen is not None and same_signal(chosen) != same_signal(held):
        raise InvalidInputError(f"{output} already holds pages pruned by the {held!r} signal (this build: "
                                f"{chosen!r}); leave out the importance option, or write a new index")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def check_model(name: str) -> None:
    """Load nothing, but raise :class:`ModelLoadError` now when the model cannot be loaded: a missing
    package, a path without a config, a hub id without network, an unsupported model type."""
    from ..encoders import minilm_path
    from ..encoders.text import TEXT_MODEL_TYPES
    from ..encoders.visual import VISUAL_MODEL_TYPES, model_type_of

    try:
        if name == "minilm":
            minilm_path()
            return
        model_type = model_type_of(name)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot load model {name!r}: {_one_line(e)}") from None
    if model_type not in (*VISUAL_MODEL_TYPES, *TEXT_MODEL_TYPES):
        raise ModelLoadError(f"{name}: unsupported model type {model_type!r}; colprune encodes with "
                             f"{', '.join(VISUAL_MODEL_TYPES)} or BERT-style text models ({', '.join(TEXT_MODEL_TYPES)})")


def _model_config(name: str) -> dict[str, Any] | None:
    """A model's config (``config.json`` of a folder, else the hub's), no weights loaded; None if unknown."""
    cfg = _read_config(name)
    return None if cfg is None else dict(cfg)


@functools.lru_cache(maxsize=8)
def _read_config(name: str) -> dict[str, Any] | None:
    try:
        if name == "minilm":
            from ..encoders import minilm_path

            name = minilm_path()
        cfg_path = os.path.join(name, "config.json")
        if os.path.exists(cfg_path):
            with open(cfg_path) as f:
                return json.load(f)
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(name).to_dict()
    except Exception:  # noqa: BLE001 - only a pre-check: the loaded model is checked again
        return None


def model_dim(name: str) -> int | None:
    """The vectors' dim a model gives, from its config (no weights loaded); None if unknown."""
    cfg = _model_config(name) or {}
    dim = cfg.get("embedding_dim") or cfg.get("hidden_size")
    return int(dim) if dim else None


def model_kind(name: str) -> str | None:
    """What the model's pages are, from its config (no weights loaded): ``"text"`` or ``"image"``
    (:attr:`Encoder.input_kind <colprune.encoders.Encoder.input_kind>`); None if unknown."""
    from ..encoders.text import TEXT_MODEL_TYPES
    from ..encoders.visual import VISUAL_MODEL_TYPES

    if name == "minilm":
        return "text"
    model_type = (_model_config(name) or {}).get("model_type")
    if model_type in VISUAL_MODEL_TYPES:
        return "image"
    return "text" if model_type in TEXT_MODEL_TYPES else None


def kind_signals(kind: str | None) -> tuple[str, ...] | None:
    """Every importance signal the built-in encoders of ``kind`` give (the names a ``signals=True``
    index stores); None for an unknown kind."""
    if kind == "text":
        from ..encoders.text import SIGNALS

        return tuple(SIGNALS)
    if kind == "image":
        from ..encoders.visual import SIGNALS as VISUAL_SIGNALS

        return tuple(VISUAL_SIGNALS)
    return None
