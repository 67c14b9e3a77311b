"""Knowing that a project is up to date without generating it again.

The manifest records a fingerprint of everything generation depends on (asyncgen's
version, every input file the spec reached, the templates, the options) and the hash of
every generated file. When the fingerprint still matches, every generated file still has
its recorded hash and every user file is still there, generating again would change
nothing: `generate` and `--check` can say so without loading the spec, importing the
model generator or the formatter. This module imports nothing heavy on purpose.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncgen.resources import runtime_sources

MANIFEST = ".asyncgen-manifest.json"


def file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _templates_digest(folders: list[Path], pattern: str = "*.jinja") -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob(pattern)):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Settings:
    """The options that change what is generated, as recorded in the manifest."""

    protocol: str
    package: str
    refs_root: str | None
    allow_outside_refs: bool
    templates: str | None


def fingerprint(
    project: Path,
    inputs: list[str],
    settings: Settings,
    template_folders: list[Path],
    version: str,
) -> str | None:
    """A hash of what generation depends on; None when an input file is gone."""
    digest = hashlib.sha256()
    digest.update(version.encode())
    digest.update(json.dumps(settings.__dict__, sort_keys=True).encode())
    digest.update(_templates_digest(template_folders).encode())
    # The runtime is copied into every project: a changed runtime is a stale project.
    digest.update(_templates_digest([runtime_sources()], "*.py").encode())
    for relative in sorted(inputs):
        # Lexically, so that it works before the project folder exists.
        content = file_digest(Path(os.path.normpath(project / relative)))
        if content is None:
            return None
        digest.update(relative.encode())
        digest.update(content.encode())
    return digest.hexdigest()


def relative_inputs(project: Path, files: list[Path]) -> list[str]:
    return sorted(Path(os.path.relpath(path, project)).as_posix() for path in files)


def read(project: Path) -> dict[str, Any]:
    try:
        data = json.loads((project / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def up_to_date(
    project: Path,
    requested: Settings,
    template_folders: list[Path],
    version: str,
) -> bool:
    """Whether generating into `project` with these settings would change nothing.

    `requested.protocol` and `requested.package` may be empty, meaning "as before".
    """
    manifest = read(project)
    recorded = manifest.get("settings")
    inputs = manifest.get("inputs")
    files = manifest.get("files")
    user_files = manifest.get("user_files")
    if not (
        isinstance(recorded, dict)
        and isinstance(inputs, list)
        and isinstance(files, dict)
        and isinstance(user_files, list)
    ):
        return False
    settings = Settings(
        protocol=requested.protocol or str(recorded.get("protocol")),
        package=requested.package or str(recorded.get("package")),
        refs_root=requested.refs_root,
        allow_outside_refs=requested.allow_outside_refs,
        templates=requested.templates,
    )
    if settings.__dict__ != recorded:
        return False
    current = fingerprint(project, [str(i) for i in inputs], settings, template_folders, version)
    if current is None or current != manifest.get("fingerprint"):
        return False
    for path, expected in files.items():
        if file_digest(project / path) != expected:
            return False
    return all((project / str(path)).exists() for path in user_files)
