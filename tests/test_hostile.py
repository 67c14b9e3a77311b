"""Hostile specs: names and text chosen to break generated code, and random mutations.

A spec is input from someone else. Whatever its names and text, the generated project
must compile, lint, type-check and pass its own tests, nothing from the spec may run
(template syntax stays text, code stays inside literals, docstrings and comments), and
no name may put a file outside the output folder.
"""

from __future__ import annotations

import ast
import copy
import json
import keyword
import os
import re
import subprocess
import sys
import tomllib
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dotenv
import pydantic
import pytest
import yaml
from conftest import EXAMPLES, SHARED_SPECS, generate, not_black_formatted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from asyncgen.cli import app
from asyncgen.render.context import BASE_MODEL_ATTRIBUTES

# -- the hostile document -------------------------------------------------------------

#: Code that would print PWNED if it ever ran.
PAYLOAD = '\nimport os; os.system("echo PWNED")\n'
#: Text that breaks out of string literals, docstrings, comments or Jinja if it can.
EVIL = (
    'quotes " \' """ \'\'\' backslashes \\ \\n \\" jinja {{ 7*7 }} {% raw %} {# note #}'
    " # comment" + PAYLOAD + "# ends with a backslash \\"
)
KEYWORDS = ["class", "import", "None", "list", "self", "async", "match", "print", "__init__"]
#: Names that differ only in case or punctuation, and names the generated code uses itself.
LOOKALIKES = ["device-id", "deviceId", "device_id", "Status", "status"]
GENERATED = ["model_config", "model_dump", "json", "P", "SEPARATOR", "topic", "timeout"]
GENERATED += ["handle", "main", "Handlers", "models"]
UNICODE = ["température", "温度"]
NAMES = KEYWORDS + LOOKALIKES + GENERATED + UNICODE
#: Channel and operation keys that look like paths out of the output folder.
ESCAPES = ["../../evil", "..\\..\\evil"]
ENUM = ['a"b', '"""', "'''", "\\", "{{ 7*7 }}", "{% raw %}", "# comment", PAYLOAD]
ENUM += ["None", "class", "", "température", "温度", "1"]
#: A topic level with every breaker but `#` and `+`, which are MQTT wildcards.
ADDRESS_LEVEL = '"q" \'q\' """ back\\slash %} 7*7 température 温度'
#: The same for NATS, whose client refuses white space and `*` inside a subject token.
NATS_ADDRESS_LEVEL = '"q"_\'q\'_"""_back\\slash_%}_7x7_température_温度'
#: Parameter examples: all but the last would change the topic's levels.
PARAM_EXAMPLES = ["a/b", "x+y", "#", "ok \"'\\ %}"]
#: Component names may only hold letters, digits, `.`, `-` and `_`.
COMPONENT_NAMES = [name for name in NAMES if re.fullmatch(r"[A-Za-z0-9._-]+", name)]


def hostile_document(level: str = ADDRESS_LEVEL) -> dict[str, Any]:
    """An AsyncAPI 3.0 document full of hostile names and text."""
    schemas: dict[str, Any] = {
        "Kind": {"type": "string", "description": EVIL, "enum": ENUM},
        "Everything": {
            "type": "object",
            "title": EVIL,
            "description": EVIL,
            "properties": {
                **{
                    name: {"type": "string", "description": EVIL, "examples": [EVIL]}
                    for name in [*NAMES, *ESCAPES, '"""', "{{ 7*7 }}", "a b", "1st"]
                },
                "kind": {"$ref": "#/components/schemas/Kind"},
                # A list type beside a field named `list`.
                "tags": {"type": "array", "items": {"type": "string"}, "description": EVIL},
            },
            "required": ["class", "kind"],
        },
    }
    for name in COMPONENT_NAMES:
        schemas[name] = {
            "type": "object",
            "title": EVIL,
            "description": EVIL,
            "properties": {
                name: {"type": "string", "description": EVIL},
                "kind": {"$ref": "#/components/schemas/Kind"},
            },
            "required": [name],
        }
    everything_example: dict[str, Any] = {name: EVIL for name in [*NAMES, *ESCAPES]}
    everything_example |= {"kind": PAYLOAD, "tags": [EVIL, "{{ 7*7 }}"]}

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for index, name in enumerate([*NAMES, *ESCAPES]):
        param = name if name not in ESCAPES else "class"
        in_components = name in COMPONENT_NAMES
        channels[name] = {
            "address": f"hostile/{index}/{level}/{{{param}}}",
            "title": EVIL,
            "summary": EVIL,
            "description": EVIL,
            "parameters": {param: {"description": EVIL, "examples": PARAM_EXAMPLES}},
            "messages": {
                name: {
                    "name": name,
                    "title": EVIL,
                    "summary": EVIL,
                    "description": EVIL,
                    "payload": {
                        "$ref": f"#/components/schemas/{name if in_components else 'Everything'}"
                    },
                    "examples": [
                        {
                            "name": EVIL,
                            "summary": EVIL,
                            "payload": {name: EVIL, "kind": PAYLOAD}
                            if in_components
                            else everything_example,
                        }
                    ],
                }
            },
        }
        pointer = name.replace("~", "~0").replace("/", "~1")
        operations[name] = {
            "action": "receive" if index % 2 == 0 or name in ESCAPES else "send",
            "channel": {"$ref": f"#/channels/{pointer}"},
            "title": EVIL,
            "summary": EVIL,
            "description": EVIL,
            "bindings": {"mqtt": {"qos": 1}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": 'Hostile "API" """ \\ {{ 7*7 }} {% raw %} # comment' + PAYLOAD,
            "version": '1.0 """ {{ 7*7 }}' + PAYLOAD,
            "description": EVIL,
        },
        "servers": {
            "production": {
                "host": "localhost:1883",
                "protocol": "mqtt",
                "description": EVIL,
                "bindings": {"mqtt": {"clientId": EVIL}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas},
    }


# -- generating it once ---------------------------------------------------------------


@dataclass
class Project:
    protocol: str
    root: Path
    output: Path
    package: str
    result: subprocess.CompletedProcess[str]

    def files(self) -> Iterator[Path]:
        for path in sorted(self.output.rglob("*")):
            if path.is_file() and not {"__pycache__", ".mypy_cache"} & set(path.parts):
                yield path

    def python_files(self) -> Iterator[Path]:
        return (path for path in self.files() if path.suffix == ".py")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A Python command inside the project, with its package importable."""
        env = {**os.environ, "PYTHONPATH": str(self.output / "src"), "MYPYPATH": "src"}
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            cwd=self.output,
            env=env,
            timeout=300,
        )


@pytest.fixture(scope="module", params=["mqtt", "nats"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The hostile document generated for MQTT (its servers' protocol), and for NATS."""
    root = tmp_path_factory.mktemp(f"hostile-{request.param}")
    spec = root / "spec" / "hostile.yaml"
    spec.parent.mkdir()
    level = NATS_ADDRESS_LEVEL if request.param == "nats" else ADDRESS_LEVEL
    document = hostile_document(level)
    spec.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    output = root / "out"
    result = generate(spec, output, "--protocol", request.param)
    assert result.returncode == 0, result.stdout + result.stderr
    packages = [path.name for path in (output / "src").iterdir()]
    assert len(packages) == 1, packages
    return Project(request.param, root, output, packages[0], result)


def without_durations(text: str) -> str:
    """pytest's report with its timings removed (`in 0.49s` is not a smuggled 7*7)."""
    return re.sub(r"\d+(\.\d+)?s\b", "", text)


def test_the_hostile_document_generates_with_warnings_and_no_traceback(
    project: Project,
) -> None:
    output = project.result.stdout + project.result.stderr
    assert "Traceback" not in output
    # Bindings that break their specification (`qos: "1; import os"`) are refused before
    # anything is generated: tests/test_validate_semantic.py.


def test_addresses_no_nats_client_takes_are_refused_for_nats_each_located(
    tmp_path: Path,
) -> None:
    """White space and `*` inside a level are fine in an MQTT topic; nats-py refuses such a
    subject when subscribing, so the service would die there: refused, every one named."""
    spec = tmp_path / "hostile.yaml"
    document = hostile_document()
    spec.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    result = generate(spec, tmp_path / "out", "--protocol", "nats")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    refused = [line for line in result.stderr.splitlines() if "maps to the NATS subject" in line]
    assert len(refused) == len(document["channels"])
    assert all(line.startswith(f"{spec}:") and "#/channels/" in line for line in refused)
    assert not (tmp_path / "out").exists()


def test_parameter_attributes_avoid_every_public_attribute_of_pydantics_base_model() -> None:
    # The list is written out (generating does not import pydantic); a pydantic that
    # adds a public attribute must be added to it, or a parameter could shadow it.
    public = {name for name in dir(pydantic.BaseModel) if not name.startswith(("_", "model_"))}
    assert public <= BASE_MODEL_ATTRIBUTES


def test_no_name_puts_a_file_outside_the_output_folder(project: Project) -> None:
    outside = [
        path
        for path in project.root.rglob("*")
        if path.is_file() and not path.is_relative_to(project.output)
    ]
    assert outside == [project.root / "spec" / "hostile.yaml"]
    for path in project.files():
        assert path.resolve().is_relative_to(project.output.resolve()), path
    handlers = project.output / "src" / project.package / "handlers"
    assert {"evil.py", "evil_2.py"} <= {path.name for path in handlers.iterdir()}
    manifest = json.loads((project.output / ".asyncgen-manifest.json").read_text())
    for path in [*manifest["files"], *manifest["user_files"]]:
        assert ".." not in Path(path).parts and not Path(path).is_absolute(), path


def test_every_module_name_is_a_plain_identifier(project: Project) -> None:
    for path in project.python_files():
        assert path.stem.isidentifier() and path.stem.isascii(), path
    handlers = project.output / "src" / project.package / "handlers"
    for path in handlers.glob("*.py"):
        if path.name != "__init__.py":
            assert not keyword.iskeyword(path.stem) and not path.stem.startswith("_"), path


def test_the_project_compiles(project: Project) -> None:
    result = project.run("-m", "compileall", "-q", "src", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_project_passes_ruff(project: Project) -> None:
    result = project.run("-m", "ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_project_is_already_formatted_by_isort_and_black(project: Project) -> None:
    assert not_black_formatted(project.output, project.package) == []


def test_the_project_passes_mypy_strict(project: Project) -> None:
    result = project.run("-m", "mypy", "--strict", "--no-incremental", "-p", project.package)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_projects_own_tests_pass_and_print_nothing_smuggled(project: Project) -> None:
    result = project.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Every receive operation's example reached its handler (none was left out).
    receive = len([name for index, name in enumerate(NAMES) if index % 2 == 0]) + len(ESCAPES)
    assert f"{receive + 1} passed" in output, output
    assert "PWNED" not in output
    assert "49" not in without_durations(output)


def import_everything(project: Project, *options: str) -> subprocess.CompletedProcess[str]:
    """Import every module of the project's package in one fresh interpreter."""
    modules = [
        ".".join(path.relative_to(project.output / "src").with_suffix("").parts)
        for path in (project.output / "src").rglob("*.py")
    ]
    code = "import importlib\n" + "".join(
        f"importlib.import_module({module.removesuffix('.__init__')!r})\n"
        for module in sorted(modules)
        if not module.endswith("__main__")
    )
    return project.run(*options, "-c", code)


def test_importing_every_module_runs_nothing_from_the_spec(project: Project) -> None:
    result = import_everything(project)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "PWNED" not in output
    assert "49" not in output


def test_importing_every_module_prints_nothing(project: Project) -> None:
    result = import_everything(project, "-W", "error")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_spec_code_never_becomes_a_statement(project: Project) -> None:
    seen_as_text = False
    for path in project.python_files():
        source = path.read_text(encoding="utf-8")
        seen_as_text = seen_as_text or 'os.system("echo PWNED")' in source
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.Call):
                assert ast.unparse(node.func) not in ("os.system", "eval", "exec"), path
            # The runtime is asyncgen's own code, copied unchanged (test_runtime_package):
            # the spec's text cannot reach it, and it may use `os`.
            if isinstance(node, ast.Import) and path.parent.name != "runtime":
                assert "os" not in [alias.name for alias in node.names], path
    assert seen_as_text, "the hostile text should be in the generated code, as text"


def test_template_syntax_in_the_spec_stays_text(project: Project) -> None:
    generated = project.output / "src" / project.package / "_generated"
    assert "{{ 7*7 }}" in (generated / "models.py").read_text(encoding="utf-8")
    assert "{{ 7*7 }}" in (generated / "channels.py").read_text(encoding="utf-8")
    for path in project.files():
        if path.name != ".asyncgen-manifest.json":  # hashes may hold any digits
            assert "49" not in path.read_text(encoding="utf-8"), path


def test_pyproject_and_env_example_hold_the_spec_text_safely(project: Project) -> None:
    pyproject = tomllib.loads((project.output / "pyproject.toml").read_text(encoding="utf-8"))
    assert "{{ 7*7 }}" in pyproject["project"]["description"]
    spec = project.output / pyproject["tool"]["asyncgen"]["spec"]
    assert spec.resolve() == project.root / "spec" / "hostile.yaml"
    values = dotenv.dotenv_values(project.output / ".env.example")
    assert "PWNED" not in "".join(str(value) for value in values.values())
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in values), values


def test_a_spec_path_with_quotes_and_backslashes_generates(tmp_path: Path) -> None:
    spec = tmp_path / 'a """ \\ folder' / 'spec """.yaml'
    spec.parent.mkdir()
    spec.write_text((EXAMPLES / "mqtt" / "asyncapi.yaml").read_text())
    output = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", str(spec), "-o", str(output)])
    assert result.exit_code == 0, result.output
    pyproject = tomllib.loads((output / "pyproject.toml").read_text(encoding="utf-8"))
    assert (output / pyproject["tool"]["asyncgen"]["spec"]).resolve() == spec


def test_addresses_are_the_specs_and_valid_topics_or_subjects(project: Project) -> None:
    code = f"""
import json
from {project.package}._generated import channels
found = {{}}
for name, value in vars(channels).items():
    if isinstance(value, channels.Address):
        values = {{param: "v" for param in value.names}}
        found[value.template] = [value.subscription, value.build(values)]
print(json.dumps(found))
"""
    result = project.run("-c", code)
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout)
    level = NATS_ADDRESS_LEVEL if project.protocol == "nats" else ADDRESS_LEVEL
    expected = {channel["address"] for channel in hostile_document(level)["channels"].values()}
    if project.protocol == "mqtt":
        assert set(found) == expected
        for subscription, topic in found.values():
            assert subscription.count("+") == 1 and "/+/" not in subscription
            assert subscription.endswith("/+") and "#" not in subscription
            assert topic.endswith("/v") and not {"+", "#", "\x00"} & set(topic)
            assert len(topic.encode()) < 65536
        return
    # NATS: each address is mapped as the MQTT gateway maps topics (`/` -> `.`), with
    # `*` for its parameter.
    assert set(found) == {address.strip("/").replace("/", ".") for address in expected}
    for subscription, subject in found.values():
        tokens = subscription.split(".")
        assert all(tokens) and tokens.count("*") == 1 and ">" not in tokens
        assert subject.endswith(".v") and not {"*", ">"} & set(subject.split("."))


# -- random mutations of a valid document ----------------------------------------------

runner = CliRunner()
VALID = yaml.safe_load((EXAMPLES / "mqtt" / "asyncapi.yaml").read_text(encoding="utf-8"))
#: Keys whose values are names or text that reach the generated code.
TEXT_KEYS = {"name", "title", "summary", "description", "address", "clientId"}
#: Line separators other than \n and \r, which Python's `str.splitlines` splits at too.
LINE_SEPARATORS = "\x0b\x1c\x1d\x1e\x85\u2028\u2029"
#: YAML cannot carry lone surrogates; everything else is fair game.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)

Path_ = tuple[str | int, ...]


def paths(value: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """The path of every value below `value`, as keys and indexes."""
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, item in items:
        yield (*prefix, key)
        yield from paths(item, (*prefix, key))


def parent_of(document: Any, path: Path_) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


def retyped(value: Any, kind: str) -> Any:
    """`value` as another type: str <-> int <-> list <-> dict <-> None."""
    conversions: dict[str, Callable[[], Any]] = {
        "str": lambda: json.dumps(value) if not isinstance(value, str) else value + "x",
        "int": lambda: len(value) if isinstance(value, str | list | dict) else 7,
        "list": lambda: [value],
        "dict": lambda: {"value": value},
        "none": lambda: None,
    }
    return conversions[kind]()


def single_file_documents() -> list[dict[str, Any]]:
    """The mqtt example and the documents of ../shared/specs that need no other file."""
    documents = [VALID]
    for path in sorted(SHARED_SPECS.rglob("*.y*ml")) if SHARED_SPECS.is_dir() else []:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
        if "asyncapi" in document and not re.search(r"\$ref: ['\"]?\.", text):
            documents.append(document)
    return documents


SOURCES = single_file_documents()


def nested_items(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


#: Keywords and values put into payload schemas: each must come out as a located error,
#: a warning, or models that import nothing the spec chose.
HOSTILE_SCHEMA: list[tuple[str, Any]] = [
    ("customTypePath", "antigravity.Fly"),
    ("customBasePath", "antigravity.Fly"),
    ("x-python-type", "antigravity.Fly"),
    ("x-python-import", {"module": "antigravity", "name": "Fly"}),
    ("x-enum-varnames", ["antigravity"]),
    ("minimum", float("nan")),
    ("maximum", float("-inf")),
    ("maxLength", 10**20),
    ("maximum", 10**400),
    ("enum", [[1], {"a": 1}]),
    ("enum", ["a", "a", "\u202e", "\u2028", "\x00"]),
    ("const", {"a": [1]}),
    ("format", "email"),
    ("format", "ulid"),
    ("pattern", "(?<"),
    ("additionalProperties", {"type": "integer"}),
    ("items", nested_items(150)),
    ("$ref", "a\x00b.yaml"),
    ("$ref", "x" * 300 + ".yaml"),
]


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(SOURCES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        # Deepest first: hypothesis favours the first item, which should not be `asyncapi`.
        every = sorted(paths(document), key=len, reverse=True)
        if not every:
            break
        texts = [
            path
            for path in every
            if path[-1] in TEXT_KEYS or (len(path) > 1 and path[-2] in ("enum", "examples"))
        ]
        schemas = [
            path
            for path in every
            if {"payload", "headers", "schemas"} & set(map(str, path))
            and isinstance(parent_of(document, path)[path[-1]], dict)
        ]
        action = draw(st.sampled_from(["drop", "rename", "retype", "text", "schema"]))
        if action == "schema" and schemas:
            path = draw(st.sampled_from(schemas))
            keyword, value = draw(st.sampled_from(HOSTILE_SCHEMA))
            parent_of(document, path)[path[-1]][keyword] = copy.deepcopy(value)
            continue
        path = draw(st.sampled_from(texts if action == "text" and texts else every))
        parent, key = parent_of(document, path), path[-1]
        if action == "drop":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            new_key = draw(TEXT)
            parent[new_key] = parent.pop(key)
        elif action == "retype":
            parent[key] = retyped(
                parent[key], draw(st.sampled_from(["str", "int", "list", "dict", "none"]))
            )
        else:
            parent[key] = draw(TEXT)
    return document


@pytest.mark.parametrize("separator", list(LINE_SEPARATORS))
def test_an_enum_value_with_a_line_separator_generates(separator: str, tmp_path: Path) -> None:
    document = copy.deepcopy(VALID)
    document["components"]["schemas"]["Priority"]["enum"].append(f"very{separator}high")
    spec = tmp_path / "asyncapi.json"  # YAML would fold some of these into spaces
    spec.write_text(json.dumps(document), encoding="utf-8")
    result = runner.invoke(app, ["generate", str(spec), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    models = next((tmp_path / "out").rglob("models.py")).read_text(encoding="utf-8")
    assert separator not in models and f"very\\u{ord(separator):04x}high" in models
    compile(models, "models.py", "exec")


def test_a_lone_surrogate_in_json_text_generates_or_fails_cleanly(tmp_path: Path) -> None:
    document = copy.deepcopy(VALID)
    document["components"]["schemas"]["Location"]["description"] = "half a pair: \udfff"
    spec = tmp_path / "asyncapi.json"
    spec.write_text(json.dumps(document), encoding="utf-8")  # written as the escape \udfff
    result = runner.invoke(app, ["generate", str(spec), "-o", str(tmp_path / "out")])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code in (0, 1), result.output


def test_a_payload_pattern_that_is_no_regex_is_refused_with_its_line(tmp_path: Path) -> None:
    document = copy.deepcopy(VALID)
    document["components"]["schemas"]["DeviceMetadata"]["properties"]["model"]["pattern"] = "["
    spec = tmp_path / "asyncapi.yaml"
    spec.write_text(yaml.safe_dump(document), encoding="utf-8")
    output = tmp_path / "out"
    result = runner.invoke(app, ["generate", str(spec), "-o", str(output)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    pointer = "#/components/schemas/DeviceMetadata/properties/model/pattern"
    assert re.search(
        rf"asyncapi\.yaml:\d+:\d+ {re.escape(pointer)}: error: pattern '\[' is not a valid "
        "regular expression",
        result.output,
    ), result.output
    assert not output.exists()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(document=mutated_documents())
def test_a_mutated_document_generates_compiling_code_or_fails_cleanly(
    document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("mutated")
    spec = root / "asyncapi.yaml"
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    spec.write_text(text, encoding="utf-8")
    output = root / "out"
    result = runner.invoke(app, ["generate", str(spec), "-o", str(output)])
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    report = result.output
    if crashed:
        report += "".join(traceback.format_exception(result.exception))
    assert not crashed, f"{report}\n--- the document:\n{text}"
    assert result.exit_code in (0, 1), f"{report}\n--- the document:\n{text}"
    if result.exit_code == 1:
        assert "error" in result.output and str(spec) in result.output, report
        assert not output.exists()
        return
    for path in output.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        compile(source, str(path), "exec")
        assert "antigravity" not in source, path


# -- datamodel-code-generator's own keywords --------------------------------------------

#: Each extension keyword datamodel-code-generator reads from a schema, with a value that
#: would make the models import `antigravity` (which opens a web browser when imported)
#: or otherwise reshape them; `object` marks those read on an object schema.
GENERATOR_KEYWORDS: dict[str, tuple[Any, bool]] = {
    "customTypePath": ("antigravity.Fly", False),
    "customBasePath": ("antigravity.Fly", True),
    "x-python-type": ("antigravity.Fly", False),
    "x-python-import": ({"module": "antigravity", "name": "Fly"}, False),
    "x-python-unserializable": (True, False),
    "x-is-base-class": (True, True),
    "x-is-classvar": (True, False),
    "x-enum-varnames": (["FLY", "SWIM"], False),
    "x-enumNames": (["FLY", "SWIM"], False),
    "x-enum-descriptions": (["import antigravity", "swim"], False),
    "x-enum-field-as-literal": (True, False),
    "x-propertyNames": ({"pattern": "^a"}, True),
    "default_factory": ("list", False),
    "x-datamodel-code-generator-read-as-const": (True, False),
}
#: Those that choose code are refused; the others are ignored with a warning.
CODE_CHOOSING = {"customTypePath", "customBasePath", "x-python-type", "x-python-import"}
CODE_CHOOSING |= {"x-python-unserializable", "x-is-base-class", "x-is-classvar"}


def keyword_document(keyword: str | None) -> dict[str, Any]:
    """A document whose payload's `mode` property (or the payload) carries `keyword`."""
    payload: dict[str, Any] = {
        "type": "object",
        "properties": {"mode": {"type": "string", "enum": ["fly", "swim"]}},
        "additionalProperties": {"type": "string"},
    }
    if keyword is not None:
        value, on_object = GENERATOR_KEYWORDS[keyword]
        (payload if on_object else payload["properties"]["mode"])[keyword] = value
    return one_payload_document("Keywords", payload)


def one_payload_document(title: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A document with one receive operation of one message of `payload`."""
    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": "1"},
        "channels": {"things": {"address": "things", "messages": {"thing": {"payload": payload}}}},
        "operations": {
            "receiveThing": {"action": "receive", "channel": {"$ref": "#/channels/things"}}
        },
    }


def generate_in(folder: Path, document: dict[str, Any]) -> tuple[Any, Path, Path]:
    folder.mkdir()
    spec = folder / "asyncapi.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    output = folder / "out"
    return runner.invoke(app, ["generate", str(spec), "-o", str(output)]), spec, output


def test_every_keyword_the_generator_reads_from_schemas_is_covered() -> None:
    from asyncgen.model.keywords import (
        CODE_KEYWORDS,
        IGNORED_KEYWORDS,
        is_code_keyword,
        is_ignored_keyword,
    )

    assert set(GENERATOR_KEYWORDS) >= CODE_KEYWORDS | IGNORED_KEYWORDS
    assert {key for key in GENERATOR_KEYWORDS if is_code_keyword(key)} == CODE_CHOOSING
    assert all(is_ignored_keyword(key) for key in set(GENERATOR_KEYWORDS) - CODE_CHOOSING)


@pytest.mark.parametrize("keyword", sorted(CODE_CHOOSING))
def test_a_keyword_that_chooses_code_is_refused_with_its_place(
    keyword: str, tmp_path: Path
) -> None:
    result, spec, output = generate_in(tmp_path / "spec", keyword_document(keyword))
    assert result.exit_code == 1, result.output
    on_object = GENERATOR_KEYWORDS[keyword][1]
    pointer = "#/channels/things/messages/thing/payload" + ("" if on_object else "/properties/mode")
    assert re.search(
        rf"{re.escape(str(spec))}:\d+:\d+ {re.escape(pointer)}/{re.escape(keyword)}: error: "
        rf"`{re.escape(keyword)}` \(a datamodel-code-generator extension\) would choose",
        result.output,
    ), result.output
    assert not output.exists()
    checked = runner.invoke(app, ["validate", str(spec)])
    assert checked.exit_code == 1 and f"{pointer}/{keyword}: error:" in checked.output


@pytest.mark.parametrize("keyword", sorted(set(GENERATOR_KEYWORDS) - CODE_CHOOSING))
def test_a_keyword_that_reshapes_models_is_ignored_with_a_warning(
    keyword: str, tmp_path: Path
) -> None:
    result, spec, output = generate_in(tmp_path / "with", keyword_document(keyword))
    assert result.exit_code == 0, result.output
    assert re.search(
        rf"{re.escape(str(spec))}:\d+:\d+ #/channels/things/messages/thing/payload[/a-z]*"
        rf"/{re.escape(keyword)}: warning: `{re.escape(keyword)}` .* is ignored",
        result.output,
    ), result.output
    plain, _, plain_output = generate_in(tmp_path / "without", keyword_document(None))
    assert plain.exit_code == 0, plain.output
    models = Path("src", "keywords", "_generated", "models.py")
    assert (output / models).read_text() == (plain_output / models).read_text()


@pytest.mark.parametrize("keyword", sorted(GENERATOR_KEYWORDS))
def test_no_generator_keyword_reaches_the_models_even_unvalidated(keyword: str) -> None:
    from asyncgen.render.models import generate_models

    value, on_object = GENERATOR_KEYWORDS[keyword]
    mode = {"type": "string", "enum": ["fly", "swim"]}
    schema: dict[str, Any] = {"type": "object", "properties": {"mode": mode}}
    plain = generate_models({"Move": copy.deepcopy(schema)}, {"Move": "Move"})
    (schema if on_object else mode)[keyword] = value
    nested = {"type": "array", "items": {"$defs": {"Inner": schema}, "allOf": [schema]}}
    assert generate_models({"Move": schema}, {"Move": "Move"}) == plain
    assert "antigravity" not in generate_models({"Many": nested}, {"Many": "Many"})


# -- schemas whose models need care: formats with extra dependencies, lint traps --------

AWKWARD_CONTROLS = "\u202e\u2066\u200f\x0b\x1c\x85\u2028\u2029\x00\x1b"


def awkward_document() -> dict[str, Any]:
    """Payload schemas whose straightforward models would not import, lint or type-check."""
    payload = {
        "type": "object",
        "description": f"bidi {AWKWARD_CONTROLS} controls",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "idnEmail": {"type": "string", "format": "idn-email"},
            "ulid": {"type": "string", "format": "ulid"},
            "repeated": {"type": "string", "enum": ["a", "a", "b", "b"]},
            "single": {"enum": ["only", "only"]},
            "numbers": {"enum": [1, 1.0, 2, "two", None, "two"]},
            "controls": {
                "type": "string",
                "enum": [f"x{ch}y" for ch in AWKWARD_CONTROLS],
                "description": f"one {AWKWARD_CONTROLS} each",
            },
            "pattern": {"type": "string", "pattern": "^a\u202eb$"},
            "either": {"type": ["string", "integer", "null"], "maxLength": 2, "minimum": 1},
        },
        "additionalProperties": {"type": "integer"},
        "required": ["email"],
    }
    return one_payload_document("Awkward", payload)


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("awkward")
    spec = root / "asyncapi.json"  # YAML would fold some of the controls
    spec.write_text(json.dumps(awkward_document()), encoding="utf-8")
    output = root / "out"
    result = generate(spec, output)
    assert result.returncode == 0, result.stdout + result.stderr
    return Project("mqtt", root, output, "awkward", result)


def test_the_project_depends_on_what_its_models_import(awkward: Project) -> None:
    pyproject = tomllib.loads((awkward.output / "pyproject.toml").read_text(encoding="utf-8"))
    dependencies = pyproject["project"]["dependencies"]
    assert "email-validator>=2" in dependencies
    assert "python-ulid>=2" in dependencies
    models = (awkward.output / "src/awkward/_generated/models.py").read_text(encoding="utf-8")
    assert "EmailStr" in models and "from ulid import ULID" in models


def test_a_project_without_such_formats_depends_on_nothing_more(tmp_path: Path) -> None:
    document = awkward_document()
    properties = document["channels"]["things"]["messages"]["thing"]["payload"]["properties"]
    for name in ("email", "idnEmail", "ulid"):
        del properties[name]
    document["channels"]["things"]["messages"]["thing"]["payload"]["required"] = []
    result, _, output = generate_in(tmp_path / "plain", document)
    assert result.exit_code == 0, result.output
    pyproject = tomllib.loads((output / "pyproject.toml").read_text(encoding="utf-8"))
    assert not {"email-validator>=2", "python-ulid>=2"} & set(pyproject["project"]["dependencies"])


def test_models_of_awkward_schemas_lint_type_check_and_validate(awkward: Project) -> None:
    source = (awkward.output / "src/awkward/_generated/models.py").read_text(encoding="utf-8")
    assert not re.search(r"\bDict\b", source)
    assert not any(ch in source for ch in AWKWARD_CONTROLS)
    ruff = awkward.run("-m", "ruff", "check", "--no-cache", ".")
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    mypy = awkward.run("-m", "mypy", "--strict", "--no-incremental", "-p", awkward.package)
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    assert not_black_formatted(awkward.output, awkward.package) == []
    code = """
import json, sys
from awkward._generated import models
payload = models.ThingPayload
good = json.loads(sys.argv[1])
parsed = payload.model_validate(good)
print(json.dumps(parsed.model_dump(mode="json", by_alias=True), sort_keys=True))
for bad in (
    {"email": "no-at-sign"},
    {"email": "a@b.org", "extra": "not an integer"},
    {"email": "a@b.org", "either": "abc"},
    {"email": "a@b.org", "either": 0},
):
    try:
        payload.model_validate(bad)
    except ValueError:
        continue
    sys.exit(f"accepted {bad}")
"""
    controls = [f"x{ch}y" for ch in AWKWARD_CONTROLS]
    good = {
        "email": "a@b.org",
        "idnEmail": "ü@b.org",
        "ulid": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "repeated": "b",
        "single": "only",
        "numbers": "two",
        "controls": controls[0],
        "pattern": "a\u202eb",
        "either": 5,
        "extra": 7,
    }
    result = awkward.run("-c", code, json.dumps(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == good


@pytest.mark.parametrize("keyword", ["enum", "const"])
@pytest.mark.parametrize("value", [[1, 2], {"a": 1}])
def test_an_array_or_object_enum_value_is_refused_with_its_place(
    keyword: str, value: Any, tmp_path: Path
) -> None:
    document = keyword_document(None)
    mode = document["channels"]["things"]["messages"]["thing"]["payload"]["properties"]["mode"]
    mode[keyword] = ["fly", value] if keyword == "enum" else value
    result, spec, output = generate_in(tmp_path / "spec", document)
    assert result.exit_code == 1, result.output
    pointer = "#/channels/things/messages/thing/payload/properties/mode/" + keyword
    pointer += "/1" if keyword == "enum" else ""
    assert re.search(
        rf"{re.escape(str(spec))}:\d+:\d+ {pointer}: error: unsupported", result.output
    )
    assert not output.exists()


def test_regenerating_with_a_new_email_field_warns_that_pyproject_lacks_it(
    tmp_path: Path,
) -> None:
    document = keyword_document(None)
    result, spec, output = generate_in(tmp_path / "spec", document)
    assert result.exit_code == 0, result.output
    assert "email-validator" not in (output / "pyproject.toml").read_text()
    payload = document["channels"]["things"]["messages"]["thing"]["payload"]
    payload["properties"]["contact"] = {"type": "string", "format": "email"}
    spec.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    again = runner.invoke(app, ["generate", str(spec), "-o", str(output)])
    assert again.exit_code == 0, again.output
    pyproject = output / "pyproject.toml"
    assert f"{pyproject} #/: warning: the models need 'email-validator>=2'" in again.output
    assert "email-validator" not in pyproject.read_text()


def test_isort_directives_in_spec_text_neither_break_generation_nor_the_import_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """isort obeys `isort: skip_file` wherever the text stands, a docstring included: a
    description saying so once made generation fail with isort's exception."""
    monkeypatch.setenv("ASYNCGEN_CACHE_DIR", str(tmp_path / "cache"))  # isort runs
    directives = "isort: skip_file; isort:skip_file; isort: off"
    document = {
        "asyncapi": "3.0.0",
        "info": {"title": "Directives", "version": "1.0.0", "description": directives},
        "channels": {
            "readings": {
                "address": "readings",
                "description": directives,
                "messages": {
                    "reading": {
                        "description": directives,
                        "payload": {
                            "type": "object",
                            "description": directives,
                            "properties": {"value": {"type": "number", "description": directives}},
                        },
                    }
                },
            }
        },
        "operations": {
            "receiveReading": {
                "action": "receive",
                "description": directives,
                "channel": {"$ref": "#/channels/readings"},
            }
        },
    }
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(document), encoding="utf-8")
    output = tmp_path / "out"
    result = generate(spec, output)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    models = (output / "src" / "directives" / "_generated" / "models.py").read_text()
    assert "isort: skip_file" in models, "the text is kept as written"
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "I", "."],
        cwd=output,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    assert not_black_formatted(output, "directives") == []
