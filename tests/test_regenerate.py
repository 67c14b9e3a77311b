"""The regeneration contract: regenerating after a spec change rewrites generated files,
never touches the user's, stops on hand-edited generated files, and is all-or-nothing.

Every test works on a copy of one project generated from the example spec at the start
of the module: `<work>/asyncapi.yaml` and the project in `<work>/svc`.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES, not_black_formatted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

import asyncgen.render.project as project_module
import asyncgen.write
from asyncgen import pipeline
from asyncgen.cli import app
from asyncgen.errors import UnsupportedError
from asyncgen.render.project import builtin_templates
from asyncgen.write import MANIFEST

runner = CliRunner()

PACKAGE = "iot_device_management"
HANDLERS = f"src/{PACKAGE}/handlers"
GENERATED = f"src/{PACKAGE}/_generated"
USER_FILES = [
    "pyproject.toml",
    "README.md",
    f"src/{PACKAGE}/__init__.py",
    f"src/{PACKAGE}/__main__.py",
    f"src/{PACKAGE}/lifespan.py",
    f"src/{PACKAGE}/py.typed",
    f"{HANDLERS}/__init__.py",
    f"{HANDLERS}/receive_telemetry.py",
    f"{HANDLERS}/receive_status.py",
    "tests/__init__.py",
    "tests/test_handlers.py",
]

Tree = dict[str, tuple[bytes, int] | None]


# -- helpers ---------------------------------------------------------------------------


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def explain(result: Result) -> str:
    text = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += "\nTraceback: " + "".join(traceback.format_exception(result.exception))
    return text


def succeed(*args: str) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, explain(result)
    return result


def tree(root: Path) -> Tree:
    """Every file (content and mode) and every folder (None) under `root`."""
    found: Tree = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        key = path.relative_to(root).as_posix()
        if path.is_dir():
            found[key + "/"] = None
        else:
            found[key] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return found


def leftovers(root: Path) -> list[str]:
    suffixes = (asyncgen.write.TEMP_SUFFIX, asyncgen.write.BACKUP_SUFFIX)
    return sorted(p.name for p in root.rglob("*") if p.name.endswith(suffixes))


def edit_spec(spec: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = yaml.safe_load(spec.read_text(encoding="utf-8"))
    change(doc)
    spec.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")


def add_receive(doc: dict[str, Any], name: str) -> str:
    """Add channel `<name>Events` and operation `receive<Name>`; returns the operation id."""
    channel = f"{name}Events"
    message = f"{name}Event"
    doc["channels"][channel] = {
        "address": f"extra/{name}",
        "messages": {
            message: {
                "name": f"{name.capitalize()}Event",
                "payload": {
                    "type": "object",
                    "required": ["level"],
                    "properties": {"level": {"type": "number"}},
                },
            }
        },
    }
    operation = f"receive{name.capitalize()}"
    doc["operations"][operation] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
    }
    return operation


def rename_field(doc: dict[str, Any], schema: str, old: str, new: str) -> None:
    """Rename property `old` of components/schemas/`schema`, keeping its place."""
    target = doc["components"]["schemas"][schema]
    target["properties"] = {
        (new if key == old else key): value for key, value in target["properties"].items()
    }
    if old in target.get("required", []):
        target["required"] = [new if key == old else key for key in target["required"]]


def rename_battery(doc: dict[str, Any]) -> None:
    rename_field(doc, "SensorReadings", "battery", "batteryLevel")
    for example in doc["components"]["messages"]["TelemetryData"]["examples"]:
        sensors = example["payload"]["sensors"]
        if "battery" in sensors:
            sensors["batteryLevel"] = sensors.pop("battery")


def append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as stream:
        stream.write(line + "\n")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("pristine")
    shutil.copyfile(EXAMPLES / "mqtt" / "asyncapi.yaml", work / "asyncapi.yaml")
    succeed("generate", str(work / "asyncapi.yaml"), "-o", str(work / "svc"))
    return work


@pytest.fixture
def work(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "work"
    shutil.copytree(pristine, copy)
    return copy


# -- 1. user code survives a spec change -----------------------------------------------


def test_regenerating_after_a_spec_change_keeps_every_user_file_byte_for_byte(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = work / "svc"
    handler_modules = sorted((project / HANDLERS).glob("*.py"))
    assert {p.name for p in handler_modules} >= {"receive_telemetry.py", "receive_status.py"}
    for module in handler_modules:
        text = module.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        lines[0] = lines[0].rstrip("\n") + "  # changed by the user\n"
        module.write_text("".join(lines) + f"# the user's own line in {module.stem}\n")
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\n## Notes of the user\n")
    pyproject = project / "pyproject.toml"
    before = pyproject.read_text()
    pyproject.write_text(
        before.replace("dependencies = [\n", 'dependencies = [\n    "httpx>=0.27",\n')
    )
    assert pyproject.read_text() != before
    append_line(project / "tests" / "test_handlers.py", "\n\ndef test_mine() -> None:\n    pass")
    edited = {path: (project / path).read_bytes() for path in USER_FILES}

    def change(doc: dict[str, Any]) -> None:
        add_receive(doc, "doorbell")
        rename_battery(doc)
        del doc["operations"]["receiveStatus"]

    edit_spec(work / "asyncapi.yaml", change)
    monkeypatch.chdir(project)
    result = succeed("generate")  # no SPEC: from [tool.asyncgen] in ./pyproject.toml

    for path, content in edited.items():
        assert (project / path).read_bytes() == content, f"{path} was changed"
    assert (project / HANDLERS / "receive_doorbell.py").is_file()
    models = (project / GENERATED / "models.py").read_text()
    assert 'alias="batteryLevel"' in models
    assert "battery:" not in models
    orphan = f"{HANDLERS}/receive_status.py"
    assert orphan in result.output
    assert re.search(r"orphaned \(1\):\n\s+" + re.escape(orphan), result.output)
    assert (project / orphan).is_file()
    assert "receive_status" not in (project / GENERATED / "handlers.py").read_text()


def test_a_project_made_before_lifespan_py_gets_one_and_keeps_its_other_user_files(
    work: Path,
) -> None:
    project = work / "svc"
    lifespan = f"src/{PACKAGE}/lifespan.py"
    (project / lifespan).unlink()
    # As an earlier asyncgen left it: no lifespan.py, other templates (another
    # fingerprint).
    manifest = project / MANIFEST
    text = manifest.read_text().replace(f'    "{lifespan}",\n', "")
    manifest.write_text(re.sub(r'"fingerprint": "\w+"', '"fingerprint": "earlier"', text))
    assert lifespan not in manifest.read_text()
    kept = [path for path in USER_FILES if path != lifespan]
    for path in kept:
        append_line(project / path, "# the user's own line")
    edited = {path: (project / path).read_bytes() for path in kept}

    succeed("generate", "-o", str(project))

    for path, content in edited.items():
        assert (project / path).read_bytes() == content, f"{path} was changed"
    assert "async def lifespan(service: Service)" in (project / lifespan).read_text()
    assert lifespan in manifest.read_text()
    fresh = invoke("generate", "--check", "-o", str(project))
    assert fresh.exit_code == 0, explain(fresh)


# -- 2. --check --------------------------------------------------------------------------


def test_check_passes_after_generation_and_fails_naming_stale_files_after_a_spec_change(
    work: Path,
) -> None:
    project = work / "svc"
    before = tree(work)
    fresh = invoke("generate", "--check", "-o", str(project))
    assert fresh.exit_code == 0, explain(fresh)
    assert "up to date" in fresh.output

    edit_spec(work / "asyncapi.yaml", rename_battery)
    before = tree(work)
    stale = invoke("generate", "--check", "-o", str(project))
    assert stale.exit_code == 1, explain(stale)
    assert f"a/{GENERATED}/models.py" in stale.stdout  # a diff of the stale file
    assert "+    battery_level:" in stale.stdout
    assert "stale" in stale.stderr
    assert tree(work) == before


def test_check_quiet_lists_only_the_paths_of_stale_files(work: Path) -> None:
    project = work / "svc"
    edit_spec(work / "asyncapi.yaml", rename_battery)
    before = tree(work)
    result = invoke("generate", "--check", "--quiet", "-o", str(project))
    assert result.exit_code == 1, explain(result)
    listed = result.stdout.splitlines()
    assert f"{GENERATED}/models.py" in listed
    recorded = set(yaml.safe_load((project / MANIFEST).read_text())["files"])
    assert set(listed) <= recorded, "only generated files' paths, nothing else"
    assert tree(work) == before


# -- 3. hand-edited generated files ------------------------------------------------------


def test_a_hand_edited_generated_file_stops_regeneration_until_forced(work: Path) -> None:
    project = work / "svc"
    service = project / GENERATED / "service.py"
    append_line(service, "# a quick fix by hand")
    edit_spec(work / "asyncapi.yaml", rename_battery)  # so there is something to write
    before = tree(work)

    stopped = invoke("generate", "-o", str(project))
    assert stopped.exit_code == 1, explain(stopped)
    assert f"{GENERATED}/service.py" in stopped.stderr
    assert "--force" in stopped.stderr
    assert tree(work) == before

    succeed("generate", "-o", str(project), "--force")
    assert "# a quick fix by hand" not in service.read_text()
    assert 'alias="batteryLevel"' in (project / GENERATED / "models.py").read_text()
    succeed("generate", "--check", "-o", str(project))


def test_every_file_edited_by_hand_is_named_whether_or_not_it_depends_on_the_models(
    work: Path,
) -> None:
    # service.py is staged while the models are made, models.py after them: both are
    # named, and nothing is written.
    project = work / "svc"
    append_line(project / GENERATED / "service.py", "# a quick fix by hand")
    append_line(project / GENERATED / "models.py", "# another one")
    edit_spec(work / "asyncapi.yaml", lambda doc: add_receive(doc, "doorbell"))
    before = tree(work)
    stopped = invoke("generate", "-o", str(project))
    assert stopped.exit_code == 1, explain(stopped)
    assert f"{GENERATED}/service.py" in stopped.stderr
    assert f"{GENERATED}/models.py" in stopped.stderr
    assert tree(work) == before
    assert leftovers(work) == []


def test_dry_run_names_generated_files_edited_by_hand(work: Path) -> None:
    project = work / "svc"
    append_line(project / GENERATED / "service.py", "# a quick fix by hand")
    before = tree(work)
    result = succeed("generate", "--dry-run", "-o", str(project))
    assert re.search(
        r"edited by hand .*:\n\s+" + re.escape(f"{GENERATED}/service.py"), result.output
    )
    assert tree(work) == before


# -- 4. all or nothing -------------------------------------------------------------------


class Injected(OSError):
    pass


def _ours(name: object) -> bool:
    return str(name).endswith(asyncgen.write.TEMP_SUFFIX)


def inject_failure(monkeypatch: pytest.MonkeyPatch, phase: str, at: int | str) -> None:
    """Make the write stage fail at its `at`-th temp file (or at the manifest's, "last").

    phase "mkstemp": the temporary file cannot be created; "write": it is created but
    writing it fails (EBADF, standing in for a full disk); "replace": renaming it into
    place fails.
    """
    calls = 0

    def hit(name: str) -> bool:
        nonlocal calls
        calls += 1
        if at == "last":  # the manifest is the last file of every plan
            return name == MANIFEST or name.startswith(f".{MANIFEST}.")
        return calls == at

    real_mkstemp = tempfile.mkstemp
    real_replace = os.replace

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if kwargs.get("suffix") != asyncgen.write.TEMP_SUFFIX:
            return real_mkstemp(*args, **kwargs)
        if phase == "mkstemp" and hit(str(kwargs.get("prefix", ""))):
            raise Injected(errno.ENOSPC, "no space left (injected)")
        handle, name = real_mkstemp(*args, **kwargs)
        if phase == "write" and hit(Path(name).name):
            os.close(handle)  # hand back a read-only descriptor: writing it fails
            handle = os.open(name, os.O_RDONLY)
        return handle, name

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if phase == "replace" and _ours(src) and hit(Path(str(dst)).name):
            raise Injected(errno.EIO, "rename failed (injected)")
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize(
    ("phase", "at"),
    [
        ("mkstemp", 1),
        ("write", 3),
        ("write", "last"),
        ("replace", 1),
        ("replace", 3),
        ("replace", "last"),
    ],
)
def test_a_write_that_fails_halfway_leaves_the_project_as_it_was(
    work: Path, monkeypatch: pytest.MonkeyPatch, phase: str, at: int | str
) -> None:
    project = work / "svc"
    shutil.rmtree(project / "tests")  # so the write has folders to create

    def change(doc: dict[str, Any]) -> None:
        add_receive(doc, "doorbell")
        rename_battery(doc)

    edit_spec(work / "asyncapi.yaml", change)
    before = tree(work)
    with monkeypatch.context() as patched:
        inject_failure(patched, phase, at)
        result = invoke("generate", "-o", str(project))
    assert isinstance(result.exception, OSError), explain(result)
    assert tree(work) == before  # files, modes and folders: the manifest still matches too
    assert leftovers(work) == []


def test_a_first_generation_that_fails_leaves_no_output_folder(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = work / "new" / "svc"
    inject_failure(monkeypatch, "replace", "last")
    result = invoke("generate", str(work / "asyncapi.yaml"), "-o", str(output))
    assert isinstance(result.exception, Injected), explain(result)
    assert not (work / "new").exists()


@pytest.mark.parametrize("first", [False, True], ids=["regeneration", "first generation"])
def test_models_that_fail_after_the_other_files_were_staged_leave_nothing_behind(
    work: Path, monkeypatch: pytest.MonkeyPatch, first: bool
) -> None:
    # The files that do not depend on the models are staged while the models are made
    # (here in this process, and failing): none of them may stay.
    project = work / "new" / "svc" if first else work / "svc"
    edit_spec(work / "asyncapi.yaml", lambda doc: add_receive(doc, "doorbell"))
    before = tree(work)
    staged_meanwhile: list[str] = []

    def failing_models(*args: object) -> tuple[str, bool]:
        staged_meanwhile.extend(leftovers(project))
        raise UnsupportedError("unsupported: the models failed (injected)")

    monkeypatch.setenv("ASYNCGEN_JOBS", "1")
    monkeypatch.setattr(pipeline, "made_models", failing_models)
    result = invoke("generate", str(work / "asyncapi.yaml"), "-o", str(project))
    assert result.exit_code == 1, explain(result)
    assert "the models failed (injected)" in result.stderr
    assert any(name.startswith(".service.py.") for name in staged_meanwhile), staged_meanwhile
    assert tree(work) == before
    assert leftovers(work) == []


def test_written_files_get_ordinary_permissions_and_updates_keep_them(work: Path) -> None:
    project = work / "svc"
    umask = os.umask(0o022)
    os.umask(umask)
    for path in (GENERATED + "/service.py", "README.md", HANDLERS + "/receive_status.py"):
        assert stat.S_IMODE((project / path).stat().st_mode) == 0o666 & ~umask, path
    models = project / GENERATED / "models.py"
    models.chmod(0o640)
    edit_spec(work / "asyncapi.yaml", rename_battery)
    succeed("generate", "-o", str(project))
    assert "batteryLevel" in models.read_text()
    assert stat.S_IMODE(models.stat().st_mode) == 0o640


# -- 5. custom templates -----------------------------------------------------------------


def test_a_custom_template_changes_its_file_only_and_survives_regeneration(work: Path) -> None:
    templates = work / "tpl"
    (templates / "mqtt").mkdir(parents=True)
    builtin = (builtin_templates() / "mqtt" / "env.example.jinja").read_text()
    (templates / "mqtt" / "env.example.jinja").write_text(builtin + "OUR_OWN_SETTING=1\n")
    custom = work / "custom"
    succeed(
        "generate", str(work / "asyncapi.yaml"), "-o", str(custom), "--templates", str(templates)
    )

    normal, overridden = tree(work / "svc"), tree(custom)
    assert normal.keys() == overridden.keys()
    differ = {path for path in normal if normal[path] != overridden[path]}
    assert differ == {".env.example", "pyproject.toml", MANIFEST}
    assert "OUR_OWN_SETTING=1" in (custom / ".env.example").read_text()
    # The project remembers its templates, so that a bare `asyncgen generate` uses them.
    settings = tomllib.loads((custom / "pyproject.toml").read_text())["tool"]["asyncgen"]
    assert settings["templates"] == "../tpl"
    assert (
        "templates"
        not in tomllib.loads((work / "svc" / "pyproject.toml").read_text())["tool"]["asyncgen"]
    )
    edit_spec(work / "asyncapi.yaml", rename_battery)
    succeed("generate", "-o", str(custom))
    assert "OUR_OWN_SETTING=1" in (custom / ".env.example").read_text()
    assert 'alias="batteryLevel"' in (custom / GENERATED / "models.py").read_text()
    succeed("generate", "--check", "-o", str(custom))


def test_files_of_custom_templates_are_formatted_like_the_built_in_ones(work: Path) -> None:
    templates = work / "tpl"
    (templates / "common" / "_generated").mkdir(parents=True)
    (templates / "common" / "_generated" / "__init__.py.jinja").write_text(
        '"""Generated code of {{ ctx.title | doc }}."""\nimport sys,os\n'
        "VERSIONS=[ 1,2 ,3]\n"
        "def platform( ):\n  return (sys.platform,os.sep)\n"
        'NOTE = "a line long enough that black has to split the call that holds it", 1\n'
    )
    custom = work / "custom"
    succeed(
        "generate", str(work / "asyncapi.yaml"), "-o", str(custom), "--templates", str(templates)
    )
    package = next(path.name for path in (custom / "src").iterdir())
    assert not_black_formatted(custom, package) == []
    assert "VERSIONS = [1, 2, 3]" in (custom / GENERATED / "__init__.py").read_text()


def test_refs_root_given_at_first_generation_is_kept_for_the_next(tmp_path: Path) -> None:
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "schemas.yaml").write_text(
        "Reading:\n  type: object\n  properties:\n    value: {type: number}\n"
    )
    (tmp_path / "api").mkdir()
    spec = tmp_path / "api" / "asyncapi.yaml"
    spec.write_text(
        "asyncapi: 3.0.0\ninfo: {title: Shared refs, version: '1'}\n"
        "channels:\n  readings:\n    address: readings\n    messages:\n      reading:\n"
        "        payload: {$ref: '../common/schemas.yaml#/Reading'}\n"
        "operations:\n  receiveReading:\n    action: receive\n"
        "    channel: {$ref: '#/channels/readings'}\n"
    )
    project = tmp_path / "svc"
    refused = invoke("generate", str(spec), "-o", str(project))
    assert refused.exit_code == 1 and "--refs-root" in refused.output, explain(refused)
    succeed("generate", str(spec), "-o", str(project), "--refs-root", str(tmp_path))
    settings = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["asyncgen"]
    assert settings["refs_root"] == ".."
    (tmp_path / "common" / "schemas.yaml").write_text(
        "Reading:\n  type: object\n  properties:\n    celsius: {type: number}\n"
    )
    succeed("generate", "-o", str(project))  # no SPEC, no --refs-root: from the project
    assert "celsius" in (project / "src" / "shared_refs" / "_generated" / "models.py").read_text()
    succeed("generate", "--check", "-o", str(project))


# -- 6. --dry-run ------------------------------------------------------------------------


def test_dry_run_reports_every_kind_of_change_and_writes_nothing(work: Path) -> None:
    project = work / "svc"
    (project / "README.md").unlink()

    def change(doc: dict[str, Any]) -> None:
        add_receive(doc, "doorbell")
        rename_battery(doc)
        del doc["operations"]["receiveStatus"]

    edit_spec(work / "asyncapi.yaml", change)
    before = tree(work)
    result = succeed("generate", "--dry-run", "-o", str(project))
    assert tree(work) == before

    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in result.stdout.splitlines():
        header = re.fullmatch(r"(\w+) \(\d+\):", line)
        if header:
            current = sections.setdefault(header.group(1), [])
        elif line.startswith("  "):
            current.append(line.strip())
    assert {f"{HANDLERS}/receive_doorbell.py", "README.md"} <= set(sections["created"])
    assert {f"{GENERATED}/models.py", f"{GENERATED}/handlers.py"} <= set(sections["updated"])
    assert ".env.example" in sections["unchanged"]
    assert {"pyproject.toml", f"{HANDLERS}/receive_telemetry.py"} <= set(sections["kept"])
    assert sections["orphaned"] == [f"{HANDLERS}/receive_status.py"]


# -- 7. property: any sequence of spec and user edits ------------------------------------

NAMES = ["doorbell", "window", "meter", "valve", "pump", "siren"]

step_strategy = st.one_of(
    st.tuples(st.just("add"), st.just(0)),
    st.tuples(st.just("remove"), st.integers(0, 50)),
    st.tuples(st.just("rename"), st.integers(0, 500)),
    st.tuples(st.just("append"), st.integers(0, 50)),
    st.tuples(st.just("readme"), st.just(0)),
)


@contextmanager
def project_copy(pristine: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "work"
        shutil.copytree(pristine, copy)
        yield copy


@pytest.fixture(scope="module")
def memoized_formatting() -> Iterator[None]:
    """black is deterministic and most of a generation's time: format each source once.

    The property test regenerates and checks about a hundred times over sources that are
    mostly the same; this keeps it near half a minute without changing any output."""
    real = project_module.format_python
    cache: dict[tuple[str, str, str, bool, bool], str] = {}

    def format_once(
        path: str, source: str, package: str, *, whole: bool = False, imports_sorted: bool = False
    ) -> str:
        key = (path, source, package, whole, imports_sorted)
        if key not in cache:
            cache[key] = real(path, source, package, whole=whole, imports_sorted=imports_sorted)
        return cache[key]

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(project_module, "format_python", format_once)
        yield


@pytest.mark.slow
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps=st.lists(step_strategy, min_size=1, max_size=3))
def test_no_user_line_is_ever_lost_and_generated_code_is_never_stale(
    pristine: Path, memoized_formatting: None, steps: list[tuple[str, int]]
) -> None:
    with project_copy(pristine) as work:
        project = work / "svc"
        spec = work / "asyncapi.yaml"
        added: dict[Path, list[str]] = {}
        handler_files = set((project / HANDLERS).glob("*.py"))
        for number, (kind, choice) in enumerate(steps):
            doc = yaml.safe_load(spec.read_text(encoding="utf-8"))
            if kind == "add":
                add_receive(doc, NAMES[number])
            elif kind == "remove":
                receive = [k for k, v in doc["operations"].items() if v["action"] == "receive"]
                if receive:
                    del doc["operations"][receive[choice % len(receive)]]
            elif kind == "rename":
                fields = [
                    (schema, name)
                    for schema, body in doc["components"]["schemas"].items()
                    for name in body.get("properties", {})
                ]
                schema, name = fields[choice % len(fields)]
                rename_field(doc, schema, name, f"{name}R{number}")
            elif kind == "append":
                modules = sorted((project / HANDLERS).glob("*.py"))
                module = modules[choice % len(modules)]
                line = f"# user line {number} in {module.name}"
                append_line(module, line)
                added.setdefault(module, []).append(line)
            else:
                line = f"User note {number}."
                append_line(project / "README.md", line)
                added.setdefault(project / "README.md", []).append(line)
            spec.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")

            succeed("generate", "-o", str(project))
            for path, lines in added.items():
                present = set(path.read_text(encoding="utf-8").splitlines())
                assert set(lines) <= present, f"{path.name} lost a line after {steps}"
            now = set((project / HANDLERS).glob("*.py"))
            assert handler_files <= now, "a handler module was deleted"
            handler_files = now
            check = invoke("generate", "--check", "--quiet", "-o", str(project))
            assert check.exit_code == 0, f"stale after {steps[: number + 1]}: " + explain(check)


@pytest.mark.parametrize("example", ["mqtt", "nats"])
@pytest.mark.parametrize("formatter", ["ruff", "black"])
def test_a_formatter_run_over_the_project_is_no_hand_edit(
    tmp_path: Path, example: str, formatter: str
) -> None:
    """`ruff format .` or `black .` over a generated project, as teams do: regeneration and
    --check go on, and the generated files come back in generated form."""
    project = tmp_path / "project"
    spec = EXAMPLES / example / "asyncapi.yaml"
    first = runner.invoke(app, ["generate", str(spec), "-o", str(project)])
    assert first.exit_code == 0, first.output
    generated = {
        path: path.read_text()
        for path in (project / "src").rglob("*.py")
        if "_generated" in path.parts
    }
    command = [sys.executable, "-m", formatter]
    # A team whose formatter is set to 100 columns, not the 88 asyncgen writes.
    wide = ["format", "--line-length", "100", "."] if formatter == "ruff" else ["-l", "100", "."]
    command += wide
    subprocess.run(command, cwd=project, check=True, capture_output=True)
    changed = [path for path, text in generated.items() if path.read_text() != text]
    assert changed, f"{formatter} changed nothing; the test would prove nothing"

    checked = runner.invoke(app, ["generate", "--check", "-o", str(project)])
    assert checked.exit_code == 0, checked.output
    again = runner.invoke(app, ["generate", "-o", str(project)])
    assert again.exit_code == 0, again.output
    assert "edited by hand" not in again.output
    assert {path: path.read_text() for path in generated} == generated


def test_a_real_edit_is_still_refused_after_a_formatter_ran(tmp_path: Path) -> None:
    project = tmp_path / "project"
    spec = EXAMPLES / "mqtt" / "asyncapi.yaml"
    assert runner.invoke(app, ["generate", str(spec), "-o", str(project)]).exit_code == 0
    subprocess.run([sys.executable, "-m", "ruff", "format", "."], cwd=project, check=True)
    settings = project / "src" / "iot_device_management" / "_generated" / "settings.py"
    settings.write_text(settings.read_text().replace('"localhost"', '"broker.internal"'))
    result = runner.invoke(app, ["generate", "-o", str(project)])
    assert result.exit_code == 1
    assert f"{settings}: error: edited by hand" in result.output
    assert "broker.internal" in settings.read_text()


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("{{ header }\n", 1, "unexpected '}'"),
        ("{{ header }}\n{% for op in ctx.operations %}\n{{ op.no_such_thing }}\n{% endfor %}\n",
         3, "has no attribute 'no_such_thing'"),
    ],
)  # fmt: skip
def test_a_broken_custom_template_is_named_with_its_line_and_nothing_is_written(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    templates = tmp_path / "templates" / "common"
    templates.mkdir(parents=True)
    template = templates / "README.md.jinja"
    template.write_text(text)
    output = tmp_path / "out"
    result = runner.invoke(
        app,
        ["generate", str(EXAMPLES / "mqtt" / "asyncapi.yaml"), "-o", str(output),
         "--templates", str(tmp_path / "templates")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"{template}:{line}: error: " in result.output and words in result.output
    assert "Traceback" not in result.output and not output.exists()


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_formatted_project_takes_a_spec_change(
    tmp_path: Path, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Formatted, then the spec changes: with the cache's copy of the last generation the
    formatted files are told from edits; without it, only those the change left alone are."""
    monkeypatch.setenv("ASYNCGEN_CACHE_DIR", str(tmp_path / "cache"))
    if cache == "off":
        monkeypatch.setenv("ASYNCGEN_NO_CACHE", "1")
    spec = tmp_path / "asyncapi.yaml"
    shutil.copyfile(EXAMPLES / "mqtt" / "asyncapi.yaml", spec)
    project = tmp_path / "project"
    assert runner.invoke(app, ["generate", str(spec), "-o", str(project)]).exit_code == 0
    subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--line-length", "100", "."],
        cwd=project,
        check=True,
        capture_output=True,
    )
    spec.write_text(spec.read_text().replace("Periodic sensor readings", "Regular sensor Readings"))
    result = runner.invoke(app, ["generate", "-o", str(project)])
    channels = f"{GENERATED}/channels.py"
    if cache == "on":
        assert result.exit_code == 0, result.output
        assert "Readings" in (project / channels).read_text()
    else:
        # channels.py changed with the spec and was reformatted: nothing to compare it to.
        assert result.exit_code == 1
        assert f"{project / channels}: error: edited by hand" in result.output
        assert "settings.py: error" not in result.output


def test_mqtt_client_chosen_at_generation_is_the_default_and_kept_by_regeneration(
    tmp_path: Path,
) -> None:
    project = tmp_path / "fast"
    spec = EXAMPLES / "mqtt" / "asyncapi.yaml"
    first = invoke("generate", str(spec), "-o", str(project), "--mqtt-client", "gmqtt")
    assert first.exit_code == 0, first.output
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert "gmqtt>=0.8,<0.9" in pyproject["project"]["dependencies"]
    assert pyproject["project"]["optional-dependencies"]["uvloop"] == ["uvloop>=0.19"]
    assert pyproject["tool"]["asyncgen"]["mqtt_client"] == "gmqtt"
    settings = project / "src" / "iot_device_management" / "_generated" / "settings.py"
    assert 'mqtt_client: Literal["aiomqtt", "gmqtt"] = "gmqtt"' in settings.read_text()
    # Inside the project, [tool.asyncgen] carries the choice: nothing changes.
    again = invoke("generate", "-o", str(project))
    assert again.exit_code == 0, again.output
    assert "up to date" in again.output
    # A default project records nothing and depends on aiomqtt alone.
    plain = tmp_path / "plain"
    assert invoke("generate", str(spec), "-o", str(plain)).exit_code == 0
    pyproject = tomllib.loads((plain / "pyproject.toml").read_text())
    assert "mqtt_client" not in pyproject["tool"]["asyncgen"]
    assert not any("gmqtt" in dep for dep in pyproject["project"]["dependencies"])
    assert pyproject["project"]["optional-dependencies"]["gmqtt"] == ["gmqtt>=0.8,<0.9"]


def _many_channels(count: int) -> str:
    lines = ["asyncapi: 3.0.0", "info: {title: Many, version: 1.0.0}", "channels:"]
    for i in range(count):
        lines += [
            f"  ch{i}:",
            f"    address: things/ch{i}",
            "    messages:",
            f"      m{i}:",
            "        payload: {type: object, required: [id],"
            " properties: {id: {type: string}, value: {type: number}}}",
        ]
    lines.append("operations:")
    for i in range(count):
        lines += [
            f"  receiveCh{i}:",
            "    action: receive",
            f"    channel: {{$ref: '#/channels/ch{i}'}}",
        ]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_a_generation_stopped_by_sigterm_while_staging_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "many.yaml"
    spec.write_text(_many_channels(600), encoding="utf-8")
    output = tmp_path / "new" / "svc"
    env = {**os.environ, "ASYNCGEN_NO_CACHE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncgen", "generate", str(spec), "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    # Wait for the files staged while the models are made, then stop the run.
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if output.is_dir() and leftovers(output):
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before anything was seen staged"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM, process.stderr.read()  # type: ignore[union-attr]
    assert not (tmp_path / "new").exists()
