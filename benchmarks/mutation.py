"""Mutation testing with mutmut 3: which small bugs in the runtime would the fast tests miss?

    python -m fer_edge.benchmarks.mutation run [--modules edge/crop.py,...] [--tests ...]
    python -m fer_edge.benchmarks.mutation report STAGE OUT

mutmut 3 names a mutant after the module path of the file it mutates (edge/crop.py ->
`edge.crop`), but the tests import the installed name, `fer_edge.edge.crop` (package-dir in
pyproject.toml), so run in the repository it would stop with "tests import the source under a
different module path". `run` therefore stages the installed layout in STAGE (fer_edge/ with
edge/, evaluation/, convert/, ... inside, the tests, deploy/, links to models/ and ../shared),
where mutmut's mutants/ copy shadows the editable install on sys.path; mutmut then mutates
only --modules. `report` reads mutmut's results there and writes, under OUT, the score per
module and every surviving mutant with its diff, plus the reasons kept in REASONS_FILE for
survivors judged equivalent or harmless.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fer_edge.edge.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
# What `make mutation` mutates: the runtime's stages, the conversion gate, FER+ label rules
# and deploy's command construction (paths in the repository).
MODULES = (
    "edge/crop.py", "edge/contract.py", "edge/classifier.py", "edge/tracking.py",
    "edge/pipeline.py", "edge/detectors.py", "edge/sinks.py", "edge/mqtt.py",
    "edge/dashboard.py", "edge/config.py", "evaluation/metrics.py", "convert/tflite.py",
    "evaluation/ferplus.py", "deploy/deploy.py", "deploy/remote.py",
)  # fmt: skip
# repository folder -> where it sits in the installed package (pyproject's package-dir)
PACKAGE_DIRS = ("edge", "evaluation", "train", "convert", "benchmarks")
FAST_TESTS = ("tests", "-m", "not slow")
# Files and folders of the checkout the tests read besides the code (linked into the stage)
READ_BY_TESTS = ("README.md", "docs", "Makefile", ".ci", "LICENSE")
# Tests that cannot run in the stage: one starts Python without site-packages (-S), where the
# mutants' `import mutmut` fails; one asks git about the checkout (the stage has no .git); three
# take the package's parent folder for the checkout (true only of the editable layout; two of
# them stage a mutation run of their own, as does CI's sample, a slow test, and one refreshes
# a stage from the checkout)
DESELECT = (
    "tests/test_benchmarks.py::"
    "test_make_mutation_tests_each_mutant_with_the_fast_tier_as_one_marker_expression",
    "tests/test_benchmarks.py::"
    "test_tests_that_run_the_program_in_a_subprocess_count_for_its_mutants",
    "tests/test_deploy_make.py::test_emulated_pi_tool_runs_on_a_python_without_the_package",
    "tests/test_first_hour.py::test_the_default_keras_source_is_one_path_everywhere",
    "tests/test_readme.py::test_every_renderer_has_a_block_and_every_block_a_renderer",
    "tests/test_benchmarks.py::test_ci_sample_of_make_mutation_the_crop_with_its_tests",
    "tests/test_benchmarks.py::test_again_tests_chosen_modules_of_a_kept_stage_with_the_checkouts_tests",
)
# Tests that run the program in a subprocess (`fer-edge run ...`, `make deploy ...`) count
# too: the subprocess finds the mutants through PYTHONPATH (set by `run`) and inherits mutmut's
# MUTANT_UNDER_TEST. mutmut only tests a mutant with the tests it saw reach its function, and
# it sees that in its own process; so while it looks ("stats"), SITECUSTOMIZE notes each
# function a subprocess reaches in a file, and CONFTEST_HOOK (appended to the staged
# conftest.py) hands those to mutmut after each test.
HITS_ENV = "FER_EDGE_MUTATION_HITS"
SITECUSTOMIZE = f"""\
import os

_hits = os.environ.get("{HITS_ENV}")
if _hits and os.environ.get("MUTANT_UNDER_TEST") == "stats":
    try:
        import mutmut.mutation.trampoline as _trampoline
    except ImportError:  # a Python without mutmut runs no mutant either
        _trampoline = None
    if _trampoline is not None:
        _seen = set()

        def _note(name, caller=None):
            if name not in _seen:
                _seen.add(name)
                with open(os.path.join(_hits, f"{{os.getpid()}}.txt"), "a") as f:
                    f.write(name + "\\n")

        _trampoline.record_trampoline_hit = _note
"""
CONFTEST_HOOK = f"""

# --- added by fer_edge.benchmarks.mutation: functions reached by this test's subprocesses
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    import os as _os

    hits = _os.environ.get("{HITS_ENV}")
    if not hits or _os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return
    from mutmut.state import state

    for name in _os.listdir(hits):
        path = _os.path.join(hits, name)
        with open(path) as f:
            state()._stats.update(line.strip() for line in f if line.strip())
        _os.remove(path)
"""

# Survivors judged equivalent or harmless: "mutant name" -> one-line reason. Kept beside the
# report so a re-run keeps the judgement of mutants that did not change.
REASONS_FILE = "reasons.json"


def installed_name(path: str) -> str:
    """edge/crop.py -> fer_edge/edge/crop.py; deploy/ is not installed and stays where it is."""
    return path if path.startswith("deploy/") else f"fer_edge/{path}"


def stage(stage_dir: Path, modules: list[str], tests: str) -> None:
    """The installed layout in stage_dir, with a pyproject.toml telling mutmut what to do:
    mutate `modules`, test each mutant with the pytest selection `tests` (shell words)."""
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    pkg = stage_dir / "fer_edge"
    pkg.mkdir(parents=True)
    for src in (ROOT / "fer_edge").glob("*.py"):
        shutil.copy2(src, pkg / src.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in PACKAGE_DIRS:
        if (ROOT / d).is_dir():
            shutil.copytree(ROOT / d, pkg / d, ignore=ignore)
    shutil.copytree(ROOT / "deploy", stage_dir / "deploy", ignore=ignore)
    copy_tests(stage_dir / "tests")
    (stage_dir / "hits").mkdir()
    (stage_dir / "hits" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    # large files stay where they are: links, followed by the tests (conftest: ROOT/models,
    # ROOT.parent/shared) and by the runtime (edge/config.py: fer_edge/models)
    mutants = stage_dir / "mutants"
    (mutants / "fer_edge").mkdir(parents=True)  # mutmut copies the package into it
    for where in (pkg / "models", stage_dir / "models", mutants / "models",
                  mutants / "fer_edge" / "models"):  # fmt: skip
        where.symlink_to(ROOT / "models")
    for where in (stage_dir.parent / "shared", stage_dir / "shared"):
        if not where.exists():
            where.symlink_to(ROOT.parent / "shared")
    (mutants / "shared").symlink_to(ROOT.parent / "shared")
    # deploy/stage.py copies the repository's folders (edge/, benchmarks/) into a Pi bundle:
    # there they are the unmutated sources (deploy's tests are about the bundle, not the runtime)
    for d in PACKAGE_DIRS:
        if (ROOT / d).is_dir():
            (mutants / d).symlink_to(ROOT / d)
    # and what else the tests read from the checkout (README.md, docs/, Makefile, .ci/), as
    # links: never what mutmut copies in (pyproject.toml, tests/): a copy onto a link would
    # write through it into the checkout; nothing hidden but .ci (not .git, not caches)
    for name in READ_BY_TESTS:
        if (ROOT / name).exists() and not (mutants / name).exists():
            (mutants / name).symlink_to(ROOT / name)
    # benchmarks/readme.py finds README.md and docs/ beside its package (the repository root
    # in a checkout): in the installed layout that is fer_edge/
    # (and in mutants/fer_edge/, where mutmut copies the package but not a linked folder;
    # it skips what exists there already, so these links are never written through)
    for name in ("README.md", "docs"):
        (pkg / name).symlink_to(ROOT / name)
        (mutants / "fer_edge" / name).symlink_to(ROOT / name)
    text = (ROOT / "pyproject.toml").read_text()
    text = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", text)
    only = ", ".join(json.dumps(installed_name(m)) for m in modules)
    pytest_args = ["-p", "no:cacheprovider", "-q", "-x"]
    for test in DESELECT:
        pytest_args += ["--deselect", test]
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["fer_edge", "deploy"]\n'
        f"only_mutate = [{only}]\n"
        'also_copy = ["deploy"]\n'
        f"pytest_add_cli_args = {json.dumps(pytest_args)}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(shlex.split(tests))}\n"
    )
    (stage_dir / "pyproject.toml").write_text(text)


def copy_tests(where: Path) -> None:
    """The checkout's tests into `where`, with CONFTEST_HOOK appended to its conftest.py."""
    shutil.copytree(ROOT / "tests", where, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(where / "conftest.py", "a") as f:
        f.write(CONFTEST_HOOK)


def refresh(stage_dir: Path, modules: list[str]) -> None:
    """The checkout's tests and unmutated package code into a kept stage (for --again), after
    making sure the mutated modules' sources are still the stage's: their mutants would be
    of code that is no longer ours."""

    def same(m: str) -> bool:
        staged = stage_dir / installed_name(m)
        return staged.is_file() and staged.read_bytes() == (ROOT / m).read_bytes()

    changed = [m for m in modules if not same(m)]
    if changed:
        raise SystemExit(f"mutation: {', '.join(changed)} changed since {stage_dir} was staged; "
                         "run without --resume/--again to stage again")  # fmt: skip
    for where in (stage_dir / "tests", stage_dir / "mutants" / "tests"):
        if where.is_dir():
            shutil.rmtree(where)
        copy_tests(where)
    mutated = {installed_name(m) for m in modules}
    for pkg in (stage_dir / "fer_edge", stage_dir / "mutants" / "fer_edge"):
        for src in (ROOT / "fer_edge").glob("*.py"):
            shutil.copy2(src, pkg / src.name)
        for d in PACKAGE_DIRS:
            for src in (ROOT / d).glob("*.py") if (pkg / d).is_dir() else ():
                if f"fer_edge/{d}/{src.name}" not in mutated:
                    shutil.copy2(src, pkg / d / src.name)


def again(status: dict[str, str], specs: list[str], judged: set[str] | None = None) -> list[str]:
    """The mutants to test again: MODULE (all its mutants), MODULE:missed (those not caught:
    survivors, the ones no test reached and the ones not tested yet) or MODULE:unjudged (of
    those, the ones without a reason in `judged`), MODULE as the report names it
    (fer_edge.edge.crop); or one function's, as mutmut names it (deploy.deploy.x_build_parser)."""
    names: set[str] = set()
    judged = judged or set()
    for spec in specs:
        module, _, which = spec.partition(":")
        if which not in ("", "missed", "unjudged"):
            raise SystemExit(
                f"mutation: --again {spec}: give MODULE, MODULE:missed or MODULE:unjudged"
            )
        found = [n for n in status
                 if module in (module_of(n), n.rsplit("__mutmut_", 1)[0])]  # fmt: skip
        if not found:
            raise SystemExit(f"mutation: --again {spec}: no mutants of {module} in the stage")
        missed = [n for n in found if status[n] not in ("killed", "timeout")]
        names.update(found if not which else missed if which == "missed" else
                     [n for n in missed if n not in judged])  # fmt: skip
    return sorted(names)


def results(stage_dir: Path) -> dict[str, str]:
    """mutant name -> status (killed, survived, no tests, timeout, ...) from mutmut."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=stage_dir, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


# Issue 18's scope names parts of three files: the conversion gate of convert/tflite.py (the
# rest converts with TensorFlow) and deploy's command construction (the rest drives ssh and a
# Pi); the slow tier's conversions, real sshd and emulated Pi test those other parts. mutmut
# mutates whole files, so the report gives the score over whole files and over this scope.
SCOPE_FUNCTIONS = {
    "fer_edge.convert.tflite": ("gate_problem",),
    "deploy.deploy": ("remote_from", "stage_config", "remote_sh", "build_parser"),
    "deploy.remote": ("Remote.ssh_argv", "Remote.rsync"),
}


def function_of(mutant: str) -> str:
    """fer_edge.convert.tflite.x_gate_problem__mutmut_3 -> gate_problem;
    deploy.remote.xǁRemoteǁssh_argv__mutmut_1 -> Remote.ssh_argv"""
    local = mutant[len(module_of(mutant)) + 1 :].split("__mutmut_")[0]
    return local[2:] if local.startswith("x_") else ".".join(local.split("ǁ")[1:])


def in_scope(mutant: str) -> bool:
    functions = SCOPE_FUNCTIONS.get(module_of(mutant))
    return functions is None or function_of(mutant) in functions


def module_of(mutant: str) -> str:
    """fer_edge.edge.crop.x_crop_face__mutmut_3 -> fer_edge.edge.crop (methods: .xǁClassǁ...)"""
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def diff_of(stage_dir: Path, mutant: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", mutant],
        cwd=stage_dir, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return "\n".join(ln for ln in out.splitlines() if ln.startswith(("-", "+")) and
                     not ln.startswith(("---", "+++")))  # fmt: skip


HELP_TEXT = re.compile(r"""help=(None|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")


def judged_by_rule(diff: str) -> str:
    """A reason for a survivor that one stated rule covers, else "". The rule: the mutant only
    changes an option's --help text (the string, its case, None, or the help= left out),
    which no behaviour depends on; the report lists these like any other judged survivor."""
    removed = [ln[1:] for ln in diff.splitlines() if ln.startswith("-")]
    added = [ln[1:] for ln in diff.splitlines() if ln.startswith("+")]
    if not removed or not any("help=" in ln for ln in removed):
        return ""

    def bare(lines: list[str]) -> str:
        text = HELP_TEXT.sub("", " ".join(ln.strip() for ln in lines))
        return re.sub(r"[\s,]+", "", text)

    if bare(removed) == bare(added):
        return "harmless: changes only an option's --help text"
    return ""


def source_of(module: str) -> Path:
    """fer_edge.edge.crop -> ROOT/edge/crop.py; deploy.remote -> ROOT/deploy/remote.py"""
    return ROOT / (module.removeprefix("fer_edge.").replace(".", "/") + ".py")


def source_sha(module: str) -> str:
    path = source_of(module)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def reasons_in(out: Path) -> dict[str, str]:
    """mutant name -> why it is equivalent or harmless, from out/REASONS_FILE."""
    path = out / REASONS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def score(caught: int, counted: int) -> float | None:
    """caught / counted to four places; None when nothing was counted."""
    return round(caught / counted, 4) if counted else None


def report(
    stage_dir: Path, out: Path, wall_seconds: float | None = None, command: str = ""
) -> dict:
    """Score per module and every survivor (diff, reason when judged) -> out/*.json, *.md.

    Modules this run did not mutate keep their earlier figures (each with the command, date
    and source hash it was measured with), so the whole scope can be measured a few modules
    at a time; a module whose source changed since is marked stale in the report."""
    out.mkdir(parents=True, exist_ok=True)
    reasons = reasons_in(out)
    status = results(stage_dir)
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    modules: dict[str, dict] = {}
    for name, st in sorted(status.items()):
        m = modules.setdefault(
            module_of(name),
            {"killed": 0, "timeout": 0, "survived": 0, "other": 0, "not_run": 0,
             "scope": {"killed": 0, "timeout": 0, "survived": 0, "other": 0}},
        )  # fmt: skip
        # "not checked": the run stopped before this mutant (figures of a partial run)
        known = ("killed", "timeout", "survived")
        key = st if st in known else "not_run" if st == "not checked" else "other"
        m[key] += 1
        if key != "not_run" and in_scope(name):
            m["scope"][key] += 1
    for name, m in modules.items():
        m.update(created=created, command=command, sha=source_sha(name))
        m["wall_seconds"] = round(wall_seconds, 1) if wall_seconds else None
    earlier_path = out / "mutation.json"
    earlier = json.loads(earlier_path.read_text()) if earlier_path.is_file() else {}
    # a survivor's diff (one `mutmut show`, about a second each) is taken from the last report
    # when its module's source is the same as then
    same_source = {name for name, m in earlier.get("modules", {}).items()
                   if m.get("sha") and m["sha"] == source_sha(name)}  # fmt: skip
    diffs_before = {s["mutant"]: s["diff"] for s in earlier.get("survivors", [])
                    if s["module"] in same_source and s.get("diff")}  # fmt: skip
    survivors = []
    for n, st in sorted(status.items()):
        if st == "survived":
            diff = diffs_before.get(n) or diff_of(stage_dir, n)
            survivors.append({"mutant": n, "module": module_of(n), "diff": diff,
                              "reason": reasons.get(n) or judged_by_rule(diff)})  # fmt: skip
    # a module none of whose mutants this run reached (it was stopped first) keeps its row
    for name in [n for n, m in modules.items() if m["killed"] + m["timeout"] + m["survived"] == 0
                 and m["not_run"] and n in earlier.get("modules", {})]:  # fmt: skip
        del modules[name]
    this_run = set(modules)
    if earlier:
        for name, m in earlier.get("modules", {}).items():
            if name not in modules:
                m.setdefault("created", earlier.get("created"))
                m.setdefault("command", earlier.get("command", ""))
                m.setdefault("sha", "")
                modules[name] = m
        survivors += [s for s in earlier.get("survivors", []) if s["module"] not in this_run]
        survivors.sort(key=lambda s: s["mutant"])
    # The score: caught / (caught + missed). A mutant that makes the tests overrun is caught
    # (as mutmut counts it); one that no test reaches ("no tests", "other") is missed, like a
    # survivor. Survivors judged equivalent or harmless (a reason on record) leave the
    # denominator of the judged score; the raw score keeps them.
    for name, m in modules.items():
        m["judged"] = sum(1 for s in survivors if s["module"] == name and s["reason"])
        caught, missed = m["killed"] + m["timeout"], m["survived"] + m["other"]
        m["score"] = score(caught, caught + missed)
        m["score_judged"] = score(caught, caught + missed - m["judged"])
    killed = sum(m["killed"] + m["timeout"] for m in modules.values())
    tested = killed + sum(m["survived"] + m["other"] for m in modules.values())
    judged = sum(m["judged"] for m in modules.values())
    # the same over issue 18's scope (rows measured before it was recorded count whole)
    scoped = [m.get("scope", m) for m in modules.values()]
    s_caught = sum(m["killed"] + m["timeout"] for m in scoped)
    s_tested = s_caught + sum(m["survived"] + m["other"] for m in scoped)
    s_judged = sum(1 for s in survivors if s["reason"] and in_scope(s["mutant"]))
    scope = {
        "functions": {k: list(v) for k, v in SCOPE_FUNCTIONS.items()},
        "killed": s_caught,
        "tested": s_tested,
        "judged": s_judged,
        "score": score(s_caught, s_tested),
        "score_judged": score(s_caught, s_tested - s_judged),
    }
    result = {
        "created": created,
        "wall_seconds": wall_seconds,
        "command": command,
        "score": score(killed, tested),
        "score_judged": score(killed, tested - judged),
        "killed": killed,
        "tested": tested,
        "judged": judged,
        "scope": scope,
        "modules": modules,
        "survivors": survivors,
    }
    atomic_write_text(out / "mutation.json", json.dumps(result, indent=2) + "\n")
    lines = ["# Mutation testing (mutmut 3)", ""]
    if tested:
        lines += [
            f"Score {result['score_judged']:.1%} with the {judged} survivors judged equivalent "
            f"or harmless left out (each listed below with its reason); "
            f"{result['score']:.1%} raw ({killed} of {tested} mutants killed) over "
            f"{len(modules)} modules. The last run: `{command}`"
            + (f", {wall_seconds / 60:.1f} min." if wall_seconds else "."),
            "",
            "Over issue 18's scope (whole files, except only the conversion gate of "
            "convert/tflite.py and deploy's command construction: "
            + ", ".join(f"{m.split('.')[-1]}.{f}" for m, fs in SCOPE_FUNCTIONS.items() for f in fs)
            + f"): {scope['score_judged']:.1%} judged, {scope['score']:.1%} raw "
            f"({scope['killed']} of {scope['tested']}).",
            "",
            "A mutant no test reaches counts as missed, like a survivor. "
            "*not run*: mutants the run did not reach (it was stopped); a module with some is "
            "measured on part of its mutants only. "
            "Each module's row comes from the run that last mutated it (its date below; the "
            "command of each run is in mutation.json). *stale*: the module's source changed "
            "since, so its figures are no longer current.",
            "",
        ]
    lines += [
        "| module | killed | timed out | survived (judged) | no test reaches it | not run "
        "| score | judged left out | measured |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in sorted(modules.items()):
        raw = f"{m['score']:.1%}" if m["score"] is not None else "-"
        judged_score = f"{m['score_judged']:.1%}" if m["score_judged"] is not None else "-"
        when = (m.get("created") or "")[:16].replace("T", " ")
        if m.get("sha") != source_sha(name):
            when += " *stale*"
        lines.append(
            f"| {name} | {m['killed']} | {m['timeout']} | {m['survived']} ({m['judged']}) "
            f"| {m['other']} | {m.get('not_run', 0)} | {raw} | {judged_score} | {when} |"
        )
    lines += ["", "## Surviving mutants", ""]
    for s in survivors:
        lines.append(f"- `{s['mutant']}`: {s['reason'] or 'not judged yet: a missing test?'}")
        lines += ["  ```diff", *(f"  {ln}" for ln in s["diff"].splitlines()), "  ```"]
    atomic_write_text(out / "mutation.md", "\n".join(lines) + "\n")
    return result


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fer_edge.benchmarks.mutation")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="stage, run mutmut, write the report")
    run.add_argument("--modules", default=",".join(MODULES), help="repository paths to mutate")
    run.add_argument("--tests", default=shlex.join(FAST_TESTS), help="pytest selection")
    run.add_argument("--stage", default="/tmp/fer-edge-mutation/repo", help="work folder")
    run.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mutation"))
    run.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    run.add_argument(
        "--resume",
        action="store_true",
        help="go on with the run in --stage (mutmut keeps each mutant's result)",
    )
    run.add_argument(
        "--refresh",
        action="store_true",
        help="with --resume: take the checkout's tests into the stage before going on",
    )
    run.add_argument(
        "--again",
        action="append",
        default=[],
        metavar="MODULE[:missed|:unjudged]",
        help="with --resume: take the checkout's tests into the stage and test this module's "
        "(or function's, as mutmut names it) mutants again (all, or :missed for those not "
        "caught: survivors, unreached and untested ones, or :unjudged for those of them "
        "without a reason on record); repeatable",
    )
    rep = sub.add_parser("report", help="the report of a finished run")
    rep.add_argument("stage")
    rep.add_argument("out")
    return parser


def mutation_env(stage_dir: Path) -> dict[str, str]:
    """mutmut's environment: subprocesses import the mutants (and note what they reach)."""
    hits = stage_dir.resolve() / "hits"
    (hits / "log").mkdir(parents=True, exist_ok=True)
    path = [str(stage_dir.resolve() / "mutants"), str(hits)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        HITS_ENV: str(hits / "log"),
        "FER_EDGE_HYPOTHESIS": "mutation",  # tests/test_properties.py
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "report":  # again, after reasons were added: the run's own figures stay
        earlier = Path(args.out) / "mutation.json"
        was = json.loads(earlier.read_text()) if earlier.is_file() else {}
        report(Path(args.stage), Path(args.out), was.get("wall_seconds"), was.get("command", ""))
        return 0
    stage_dir = Path(args.stage)
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    names: list[str] = []
    if args.again or args.refresh:
        if not (args.resume and (stage_dir / "mutants").is_dir()):
            raise SystemExit(f"mutation: --again and --refresh need --resume and a kept stage "
                             f"({stage_dir})")  # fmt: skip
        refresh(stage_dir, modules)
        judged = set(reasons_in(Path(args.out)))
        names = again(results(stage_dir), args.again, judged) if args.again else []
    elif not (args.resume and (stage_dir / "mutants").is_dir()):
        stage(stage_dir, modules, args.tests)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.jobs), *names],
        cwd=stage_dir,
        env=mutation_env(stage_dir),
    )
    wall = time.monotonic() - t0
    tested = [s for s in results(stage_dir).values() if s in ("killed", "survived", "timeout")]
    if proc.returncode != 0 and not tested:  # nothing to report: keep the report on record
        print(f"mutation: mutmut failed before testing a mutant (exit {proc.returncode}); "
              f"see above, or run `mutmut run` in {stage_dir}", file=sys.stderr)  # fmt: skip
        return 1
    command = "python -m fer_edge.benchmarks.mutation " + " ".join(
        a if re.fullmatch(r"[\w./,=-]+", a) else repr(a) for a in (argv or sys.argv[1:])
    )
    result = report(stage_dir, Path(args.out), wall, command)
    print(f"mutation: {result['killed']}/{result['tested']} killed in {wall / 60:.1f} min; "
          f"{Path(args.out) / 'mutation.md'}")  # fmt: skip
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
