"""The README's figures are rendered from committed result files, never typed by hand."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT
from fer_edge.benchmarks import readme


def test_readme_figures_match_the_committed_results():
    # What a user types after `make figures`, in check mode: the README must be exactly what
    # the newest results folder and the models' reports give.
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge.benchmarks.readme", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_every_renderer_has_a_block_and_every_block_a_renderer():
    text = (ROOT / "README.md").read_text()
    names = [m["name"] for m in readme.BLOCK.finditer(text)]
    assert sorted(set(names)) == sorted(readme.RENDERERS)
    assert len(names) == len(set(names))  # each figure block once


def test_a_changed_figure_is_caught(tmp_path):
    text = (ROOT / "README.md").read_text()
    block = next(readme.BLOCK.finditer(text))
    changed = text.replace(block["body"], block["body"].replace("%", "%%", 1) + "x\n", 1)
    copy = tmp_path / "README.md"
    copy.write_text(changed)
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge.benchmarks.readme", "--check", "--readme", str(copy)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "figures differ" in proc.stderr
