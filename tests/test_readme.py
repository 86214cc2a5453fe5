"""The README and docs/: figures rendered from committed result files, never typed by hand; a
short README whose links all lead somewhere; every section of the old, long README still there."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from fer_edge.benchmarks import readme

README_MAX_LINES = 250

# Every section heading of the 1,055-line README this one replaced, and the page that holds it
# now (the README itself for what it kept, under a new name where it changed).
OLD_SECTIONS = {
    "fer-edge": ("README.md", "fer-edge"),
    "Quick start": ("README.md", "First ten minutes"),
    "Install the runtime as a package": ("docs/runtime.md", None),
    "One contract from training to the edge": ("docs/conversion.md", None),
    "Training": ("docs/training.md", None),
    "The shipped models": ("docs/training.md", None),
    "Conversion": ("docs/conversion.md", None),
    "The runtime": ("docs/runtime.md", None),
    "Python API": ("docs/runtime.md", None),
    "Home Assistant": ("docs/integrations.md", None),
    "Dashboard": ("docs/integrations.md", None),
    "Latency and throughput": ("docs/benchmarks.md", None),
    "Glass-to-event latency on a live source": ("docs/benchmarks.md", None),
    "Throughput": ("docs/benchmarks.md", None),
    "Crowds": ("docs/benchmarks.md", None),
    "Raspberry Pi cost model (estimates, not measured on a Pi)": ("docs/benchmarks.md", None),
    "Raspberry Pi": ("docs/raspberry-pi.md", None),
    "The Pi, once": ("docs/raspberry-pi.md", None),
    "Deploy": ("docs/raspberry-pi.md", None),
    "Layout on the Pi and the service": ("docs/raspberry-pi.md", None),
    "Status, logs, undeploy": ("docs/raspberry-pi.md", None),
    "On the Pi": ("docs/raspberry-pi.md", None),
    "Checks without a Pi": ("docs/raspberry-pi.md", None),
    "An emulated Pi: the whole deploy on arm64, without a Pi": ("docs/raspberry-pi.md", None),
    "Tests": ("docs/development.md", None),
    "Dependencies and why": ("docs/development.md", None),
}

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code, where links are not links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def headings(text: str) -> list[str]:
    return [m[1].strip() for m in re.finditer(r"(?m)^#{1,6} +(.+?) *#*$", FENCE.sub("", text))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for h in headings(text):
        s = slug(h)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    """Relative links in one Markdown file whose file or #anchor does not exist."""
    bad = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{path.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            bad.append(f"{path.name}: {target} (no such heading)")
    return bad


def test_figures_match_the_committed_results():
    # What a user types after `make figures`, in check mode: README.md and every docs/ page
    # must be exactly what the newest results folder and the models' reports give.
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge.benchmarks.readme", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_every_renderer_has_a_block_and_every_block_a_renderer():
    files = readme.doc_files()
    assert ROOT / "README.md" in files and ROOT / "docs" / "training.md" in files
    names = [m["name"] for f in files for m in readme.BLOCK.finditer(f.read_text())]
    assert sorted(set(names)) == sorted(readme.RENDERERS)
    assert len(names) == len(set(names))  # each figure block once, across all the files
    # the README carries the headline figures itself, the pages the rest
    in_readme = {m["name"] for m in readme.BLOCK.finditer((ROOT / "README.md").read_text())}
    assert "headline" in in_readme and "models" not in in_readme


@pytest.mark.parametrize("name", ["README.md", "docs/training.md"])
def test_a_changed_figure_is_caught(tmp_path, name):
    text = (ROOT / name).read_text()
    block = next(readme.BLOCK.finditer(text))
    changed = text.replace(block["body"], block["body"].replace("%", "%%", 1) + "x\n", 1)
    copy = tmp_path / Path(name).name
    copy.write_text(changed)
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge.benchmarks.readme", "--check", "--readme", str(copy)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "figures differ" in proc.stderr
    assert str(copy) in proc.stderr


def test_the_renderer_takes_the_readme_and_every_docs_page(tmp_path):
    # Without --readme the renderer takes README.md and docs/*.md, wherever the blocks sit.
    (tmp_path / "docs").mkdir()
    for name in ("README.md", "docs/zz.md", "docs/a.md"):
        (tmp_path / name).write_text("x\n")
    assert readme.doc_files(tmp_path) == [
        tmp_path / "README.md",
        tmp_path / "docs" / "a.md",
        tmp_path / "docs" / "zz.md",
    ]


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_every_relative_link_resolves():
    files = readme.doc_files()
    assert len(files) >= 7, files
    bad = [b for f in files for b in broken_links(f)]
    assert not bad, bad


def test_the_link_check_sees_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "b.md").write_text("# B\n\n## Real part\n")
    page = tmp_path / "a.md"
    page.write_text(
        "# A\n\n[ok](b.md#real-part) [self](#a) [web](https://example.org/x)\n"
        "[gone](c.md) [wrong](b.md#no-part) ![pic](d.png)\n"
        "```\n[in code](nothing.md)\n```\n`[inline](nothing.md)`\n"
    )
    assert broken_links(page) == [
        "a.md: c.md (no such file)",
        "a.md: b.md#no-part (no such heading)",
        "a.md: d.png (no such file)",
    ]


def test_anchors_follow_github():
    assert slug("Raspberry Pi cost model (estimates, not measured on a Pi)") == (
        "raspberry-pi-cost-model-estimates-not-measured-on-a-pi"
    )
    assert slug("An emulated Pi: the whole deploy on arm64, without a Pi") == (
        "an-emulated-pi-the-whole-deploy-on-arm64-without-a-pi"
    )
    assert anchors("## Deploy\n```\n# not a heading\n```\n## Deploy\n") == {"deploy", "deploy-1"}


@pytest.mark.parametrize("old", list(OLD_SECTIONS))
def test_every_old_section_is_reachable_from_the_readme(old):
    page, new = OLD_SECTIONS[old]
    text = (ROOT / page).read_text()
    assert (new or old) in headings(text), f"{page} has no heading {new or old!r}"
    if page != "README.md":
        # a link to the section itself, or to the page when the section is the page's title
        targets = LINK.findall(prose((ROOT / "README.md").read_text()))
        title = headings(text)[0] == old
        assert f"{page}#{slug(old)}" in targets or (title and page in targets), old


def test_the_readme_video_summary_is_what_a_run_prints(tmp_path, video):
    # "A video file": the end-of-run lines the README prints are this run's, word for word.
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### A video file", 1)[1].split("\n#", 1)[0]
    assert f"`{video.name}`" in section
    printed = re.search(r"```\n(what the run saw.*?)```", section, re.S)[1].splitlines()
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge.edge", "run", "--source", str(video), "--headless"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.splitlines()
    start = out.index(printed[0])
    assert out[start : start + len(printed)] == printed, proc.stdout


def test_the_headline_stamp_names_every_folder_its_figures_come_from(tmp_path):
    """Cards and bench of today with the emulated Pi of an older run: the stamp must not claim
    today's date for the Pi figures (it did: one `make figures` stamp for all three)."""
    from fer_edge.benchmarks.readme import Sources, headline_stamp

    new, old = tmp_path / "amd-2c-20261201", tmp_path / "amd-2c-20261126"
    machine = {"cpu": "AMD EPYC", "cores": 2, "slug": "amd-2c"}
    for folder, name, date in ((new, "models", "2026-12-01"), (new, "pipeline", "2026-12-01"),
                               (old, "emulated_pi", "2026-11-26")):  # fmt: skip
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.json").write_text(
            json.dumps({"created": f"{date}T10:00:00", "machine": machine, "os": {}})
        )
    src = Sources(new, [old])
    card = json.loads((new / "models.json").read_text())
    line = headline_stamp(card, src.get("pipeline"), src)
    assert "2026-11-26" in line and "emulated Pi" in line.split("2026-11-26")[0].rsplit(";", 1)[1]
    assert "make figures` (`make cards`" not in line
    # all three from one folder: one stamp
    (new / "emulated_pi.json").write_text((old / "emulated_pi.json").read_text())
    line = headline_stamp(card, src.get("pipeline"), Sources(new, [old]))
    assert line.count("2026-") == 1 and "the emulated-Pi test" in line
