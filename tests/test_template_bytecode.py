"""Compiled templates: the built-in ones kept with the installation's bytecode, as Python
keeps a module's, custom ones in asyncgen's cache, and an edited template compiled again."""

from __future__ import annotations

import sys
from pathlib import Path

import jinja2
import pytest

from asyncgen.render.project import environment
from asyncgen.resources import builtin_templates

BUILTIN = "common/handler.py.jinja"


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(the bytecode prefix, asyncgen's cache), both empty."""
    prefix, user_cache = tmp_path / "pycache", tmp_path / "cache"
    monkeypatch.setattr(sys, "pycache_prefix", str(prefix))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setenv("ASYNCGEN_CACHE_DIR", str(user_cache))
    monkeypatch.delenv("ASYNCGEN_NO_CACHE", raising=False)
    return prefix, user_cache


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the templates Jinja compiles from source from now on."""
    names: list[str] = []
    real = jinja2.Environment.compile

    def compile(self: jinja2.Environment, source: str, name: str | None = None, *args, **kw):  # type: ignore[no-untyped-def]
        names.append(str(name))
        return real(self, source, name, *args, **kw)

    monkeypatch.setattr(jinja2.Environment, "compile", compile)
    return names


def cached(folder: Path) -> list[Path]:
    return sorted(folder.rglob("__jinja2_*.cache")) if folder.exists() else []


def test_a_built_in_template_is_compiled_once_and_kept_with_the_installation(
    places: tuple[Path, Path], compiled: list[str]
) -> None:
    prefix, user_cache = places
    environment().get_template(BUILTIN)
    assert compiled == [BUILTIN]
    kept = cached(prefix)
    assert len(kept) == 1
    # Where Python puts the bytecode of a module in the templates folder.
    assert kept[0].is_relative_to(prefix / builtin_templates().resolve().relative_to("/"))
    assert cached(user_cache) == []
    environment().get_template(BUILTIN)  # a new process would see the same
    assert compiled == [BUILTIN]


def test_without_bytecode_writing_built_in_templates_are_kept_in_the_cache(
    places: tuple[Path, Path], compiled: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, user_cache = places
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    environment().get_template(BUILTIN)
    environment().get_template(BUILTIN)
    assert compiled == [BUILTIN]
    assert cached(prefix) == []
    assert len(cached(user_cache)) == 1


def test_a_custom_template_is_kept_in_the_cache_and_compiled_again_once_edited(
    places: tuple[Path, Path], compiled: list[str], tmp_path: Path
) -> None:
    prefix, user_cache = places
    custom = tmp_path / "templates"
    (custom / "common").mkdir(parents=True)
    template = custom / "common" / "note.jinja"
    template.write_text("first {{ value }}\n")
    assert environment(custom).get_template("common/note.jinja").render(value=1) == "first 1\n"
    assert environment(custom).get_template("common/note.jinja").render(value=2) == "first 2\n"
    assert compiled == ["common/note.jinja"]
    assert cached(prefix) == []
    assert len(cached(user_cache)) == 1
    template.write_text("second {{ value }}\n")
    assert environment(custom).get_template("common/note.jinja").render(value=3) == "second 3\n"
    assert compiled == ["common/note.jinja", "common/note.jinja"]


def test_a_folder_beside_the_templates_whose_name_starts_alike_is_not_theirs(
    tmp_path: Path,
) -> None:
    from asyncgen.render.project import TemplateBytecode

    builtin = tmp_path / "templates"
    builtin.mkdir()
    bytecode = TemplateBytecode(builtin, tmp_path / "cache")
    ours = bytecode.get_cache_key("a.jinja", str(builtin.resolve() / "common" / "a.jinja"))
    theirs = bytecode.get_cache_key("b.jinja", str(tmp_path.resolve() / "templates-x" / "b.jinja"))
    assert bytecode._builtin_keys == {ours}
    assert theirs not in bytecode._builtin_keys
