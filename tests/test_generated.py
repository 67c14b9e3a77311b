"""The generated trees: golden record, snapshots, and that they compile, lint, type-check
and pass their own tests. Covers the examples and every document in ../shared/specs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import EXAMPLES, SHARED_SPECS, not_black_formatted
from syrupy.assertion import SnapshotAssertion
from typer.testing import CliRunner

from asyncgen.cli import app

runner = CliRunner()


def run_generate(spec: Path, output: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["generate", str(spec), "-o", str(output), *extra])
    text = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += "Traceback: " + "".join(traceback.format_exception(result.exception))
    return result.exit_code, text


def tree(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and ".mypy_cache" not in path.parts
    }


def generate_beside(spec: Path, workdir: Path, *extra: str) -> Path:
    """Generate with the spec copied to workdir/spec.yaml and the project in workdir/out,
    so that the spec path recorded in the project is the same on every machine."""
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / f"spec{spec.suffix}"
    shutil.copyfile(spec, copy)
    output = workdir / "out"
    code, text = run_generate(copy, output, *extra)
    assert code == 0, text
    return output


# -- the examples --------------------------------------------------------------------


@pytest.mark.parametrize("example", ["mqtt", "nats"])
def test_golden_record_matches_what_the_spec_generates(example: str, tmp_path: Path) -> None:
    spec = EXAMPLES / example / "asyncapi.yaml"
    golden = EXAMPLES / example / "generated"
    if not golden.is_dir():
        pytest.skip(f"no golden record for {example} yet")
    workdir = tmp_path / example
    workdir.mkdir()
    shutil.copyfile(spec, workdir / "asyncapi.yaml")
    code, text = run_generate(workdir / "asyncapi.yaml", workdir / "generated")
    assert code == 0, text
    assert tree(workdir / "generated") == tree(golden), (
        f"examples/{example}/generated is stale: run "
        f"`asyncgen generate examples/{example}/asyncapi.yaml -o examples/{example}/generated`"
    )


SNAPSHOT_SPECS = {
    "example-mqtt": EXAMPLES / "mqtt" / "asyncapi.yaml",
    "example-nats": EXAMPLES / "nats" / "asyncapi.yaml",
    "streetlights-mqtt-2.6.0": SHARED_SPECS / "2.6.0" / "streetlights-mqtt.yml",
    "streetlights-mqtt-3.0.0": SHARED_SPECS / "3.0.0" / "streetlights-mqtt-asyncapi.yml",
}


@pytest.mark.parametrize("name", sorted(SNAPSHOT_SPECS))
def test_generated_tree_matches_snapshot(
    name: str, tmp_path: Path, snapshot: SnapshotAssertion
) -> None:
    spec = SNAPSHOT_SPECS[name]
    if not spec.is_file():
        pytest.skip(f"{spec} is not available")
    output = generate_beside(spec, tmp_path / name)
    # The runtime is asyncgen's own package, copied: tests/test_runtime_package.py checks
    # the copy; the snapshots hold only what the document decides.
    files = tree(output)
    assert any("/_generated/runtime/" in path for path in files)
    assert {path: text for path, text in files.items() if "/_generated/runtime/" not in path} == (
        snapshot
    )


# -- every document: generate, then compile, ruff, mypy and the project's own tests ----


@dataclass
class Outcome:
    name: str
    spec: Path
    output: Path
    package: str
    code: int
    text: str


def shared_documents() -> list[Path]:
    if not SHARED_SPECS.is_dir():
        return []
    return sorted(path for path in SHARED_SPECS.rglob("*.y*ml") if "common" not in path.parts)


#: Why a corpus document may generate no project: a remote `$ref`, which these tests may
#: not fetch; or, for NATS, an address that maps to no subject (a WebSocket API's `/`).
UNSUPPORTED = {
    "mqtt": ("remote $ref",),
    "nats": ("remote $ref", "maps to the NATS subject"),
}


@pytest.fixture(scope="module")
def generated_projects(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    """Every example and shared document generated once per protocol, each under its own
    package name: a Kafka, AMQP, HTTP or WebSocket document's models and handlers still
    make an MQTT or a NATS service, which is what `--protocol` asks for."""
    root = tmp_path_factory.mktemp("projects")
    specs = [EXAMPLES / "mqtt" / "asyncapi.yaml", EXAMPLES / "nats" / "asyncapi.yaml"]
    specs += shared_documents()
    outcomes = []
    for index, spec in enumerate(specs):
        if not spec.is_file():
            continue
        name = spec.relative_to(
            spec.parents[2] if "social-media" not in spec.parts else spec.parents[3]
        ).as_posix()
        for protocol in ("mqtt", "nats"):
            package = f"project_{index}_{protocol}"
            output = root / package
            extra = ["--package-name", package, "--protocol", protocol]
            if "social-media" in spec.parts:
                extra += ["--refs-root", str(spec.parents[1])]
            code, text = run_generate(spec, output, *extra)
            outcomes.append(Outcome(f"{name} ({protocol})", spec, output, package, code, text))
    return outcomes


def test_every_document_generates_or_fails_with_a_clear_unsupported_message(
    generated_projects: list[Outcome],
) -> None:
    generated = [o for o in generated_projects if o.code == 0]
    unsupported = [o for o in generated_projects if o.code != 0]
    print(f"\ntally: {len(generated)} generated, {len(unsupported)} unsupported")
    for outcome in unsupported:
        print(f"  not generated: {outcome.name}: {outcome.text.strip()[:300]}")
        assert "Traceback" not in outcome.text, outcome.text
        assert outcome.code == 1, outcome.text
        protocol = outcome.name.rsplit("(", 1)[1].rstrip(")")
        assert any(words in outcome.text for words in UNSUPPORTED[protocol]), outcome.text
        # Located: file:line:column and JSON pointer.
        assert re.match(rf".*{re.escape(outcome.spec.name)}:\d+:\d+ #/", outcome.text), outcome.text


def _ok(projects: list[Outcome]) -> list[Outcome]:
    return [o for o in projects if o.code == 0]


def test_every_generated_tree_compiles(generated_projects: list[Outcome]) -> None:
    for outcome in _ok(generated_projects):
        result = subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(outcome.output / "src")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{outcome.name}: {result.stdout}{result.stderr}"


def test_every_generated_service_imports(generated_projects: list[Outcome]) -> None:
    """Importing the service module pulls in every generated module and the models'
    dependencies (an `EmailStr` needs email-validator): all must be installed."""
    projects = _ok(generated_projects)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(o.output / "src") for o in projects)}
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name + '._generated.service')\n"
        "        importlib.import_module(name + '.__main__')\n"
        "    except BaseException as exc:\n"
        "        failed.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *[o.package for o in projects]],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_generated_tree_passes_ruff(generated_projects: list[Outcome]) -> None:
    paths = [str(o.output) for o in _ok(generated_projects)]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *paths],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_generated_file_is_already_formatted_by_isort_and_black(
    generated_projects: list[Outcome],
) -> None:
    changed = {
        o.name: files
        for o in _ok(generated_projects)
        if (files := not_black_formatted(o.output, o.package))
    }
    assert changed == {}


def test_every_generated_tree_passes_mypy(generated_projects: list[Outcome]) -> None:
    projects = _ok(generated_projects)
    env = {**os.environ, "MYPYPATH": os.pathsep.join(str(o.output / "src") for o in projects)}
    args = [arg for o in projects for arg in ("-p", o.package)]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=projects[0].output.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


#: Runs each project's tests with pytest in turn, in one process: every project has a
#: `tests` package of its own, so the modules of the last one are forgotten first.
_RUN_EACH = """
import sys
import pytest

failed = []
for tests in sys.argv[1:]:
    for name in [m for m in sys.modules if m == "tests" or m.startswith("tests.")]:
        del sys.modules[name]
    code = pytest.main(["-q", "-p", "no:cacheprovider", "--import-mode=importlib", tests])
    if code != 0:
        failed.append(f"{tests}: exit {int(code)}")
print("FAILED PROJECTS:", failed if failed else "none")
sys.exit(1 if failed else 0)
"""


def test_every_generated_project_passes_its_own_tests(generated_projects: list[Outcome]) -> None:
    projects = _ok(generated_projects)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(o.output / "src") for o in projects),
    }
    result = subprocess.run(
        [sys.executable, "-c", _RUN_EACH, *[str(o.output / "tests") for o in projects]],
        capture_output=True,
        text=True,
        env=env,
        cwd=projects[0].output.parent,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    # Every project ran its own tests: one summary line each, none of them failing.
    summary = re.compile(r"^\d+ (passed|skipped)\b.* in [\d.]+s")
    summaries = [line for line in result.stdout.splitlines() if summary.match(line)]
    assert len(summaries) == len(projects), result.stdout[-3000:]
