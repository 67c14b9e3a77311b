"""The manifest, `.asyncgen-manifest.json`: the one module that writes, reads and hashes it.

It records the hash of every generated file, the user files, and a fingerprint of
everything generation depends on (asyncgen's version, every local file the spec reached,
every remote document with the hash of its content, the templates, the options). When
the fingerprint still matches, every generated file still has its recorded hash and
every user file is still there, generating again would change nothing: `generate` and
`--check` can say so without loading the spec, importing the model generator or the
formatter. This module imports nothing heavy on purpose.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import tokenize
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from asyncgen import cache
from asyncgen.plan import Expected, PlannedFile
from asyncgen.resources import runtime_sources

MANIFEST = ".asyncgen-manifest.json"


def digest(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def syntax_digest(path: str, content: str) -> str | None:
    """The hash of a Python file's syntax tree and comments, which formatting leaves alone
    (None for other files, or source that does not parse)."""
    if not path.endswith(".py"):
        return None
    try:
        tree = ast.parse(content)
        # Comments are no part of the tree, but a formatter keeps their text: one added
        # or changed by hand is an edit.
        comments = [
            token.string.strip()
            for token in tokenize.generate_tokens(io.StringIO(content).readline)
            if token.type == tokenize.COMMENT
        ]
    except (SyntaxError, ValueError, tokenize.TokenError):
        return None
    return digest(ast.dump(tree) + "\n" + "\n".join(comments))


def remember_generated(plan: list[PlannedFile]) -> None:
    """Keep a copy of each generated Python file in the cache, by its hash, so that a later
    run can tell a formatter's changes from a hand edit (see `last_generated`)."""
    for planned in plan:
        if planned.owner == "generated" and planned.path.endswith(".py"):
            cache.put("generated", digest(planned.content), planned.content)


def last_generated(recorded_hash: str | None) -> str | None:
    """The content a generated file had at the last generation, when the cache has it."""
    return cache.get("generated", recorded_hash) if recorded_hash else None


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
    allow_remote_refs: bool = False
    mqtt_client: str = "aiomqtt"

    def recorded(self) -> dict[str, Any]:
        """As the manifest holds them (`allow_remote_refs` and `mqtt_client` only when
        they differ from the default)."""
        data = dict(self.__dict__)
        if not self.allow_remote_refs:
            del data["allow_remote_refs"]
        if self.mqtt_client == "aiomqtt":
            del data["mqtt_client"]
        return data


@dataclass(frozen=True)
class Inputs:
    """What the spec reached: local files relative to the project, remote URLs' hashes."""

    files: list[str]
    remote: dict[str, str]

    @staticmethod
    def of(project: Path, files: list[Path], remote: dict[str, str]) -> Inputs:
        relative = sorted(Path(os.path.relpath(path, project)).as_posix() for path in files)
        return Inputs(relative, dict(sorted(remote.items())))


def fingerprint(
    project: Path,
    inputs: Inputs,
    settings: Settings,
    template_folders: list[Path],
    version: str,
    remote_digest: dict[str, str | None] | None = None,
) -> str | None:
    """A hash of what generation depends on; None when an input file is gone.

    Remote documents count by the hash of their content: the one given in
    `remote_digest` (what was read), else `inputs.remote` (what was recorded).
    """
    digest = hashlib.sha256()
    digest.update(version.encode())
    digest.update(json.dumps(settings.recorded(), sort_keys=True).encode())
    digest.update(_templates_digest(template_folders).encode())
    # The runtime is copied into every project: a changed runtime is a stale project.
    digest.update(_templates_digest([runtime_sources()], "*.py").encode())
    for relative in sorted(inputs.files):
        # Lexically, so that it works before the project folder exists.
        content = file_digest(Path(os.path.normpath(project / relative)))
        if content is None:
            return None
        digest.update(relative.encode())
        digest.update(content.encode())
    for url, recorded in sorted(inputs.remote.items()):
        content = (remote_digest or {}).get(url, recorded)
        if content is None:
            return None
        digest.update(url.encode())
        digest.update(content.encode())
    return digest.hexdigest()


def read(project: Path) -> dict[str, Any]:
    try:
        data = json.loads((project / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_handlers(project: Path, data: dict[str, Any] | None = None) -> list[Expected]:
    """The handler signatures recorded at the last generation (`data`: the manifest,
    when already read)."""
    found = (read(project) if data is None else data).get("handlers")
    result = []
    for item in found if isinstance(found, list) else []:
        try:
            result.append(Expected(**item))
        except TypeError:
            return []  # written by another version: the next generation records them anew
    return result


def fitting_handlers(project: Path, data: dict[str, Any] | None = None) -> dict[str, str]:
    """The handler modules found fitting at the last generation, each with the hash of
    its content and signature (see `signatures.fitting_digest`)."""
    found = (read(project) if data is None else data).get("fitting_handlers")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def file_hashes(project: Path) -> dict[str, str]:
    """The hash of every generated file as recorded at the last generation."""
    files = read(project).get("files")
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def manifest_file(
    plan: list[PlannedFile],
    tool_version: str,
    fingerprint: str | None,
    inputs: Inputs,
    settings: Settings,
    handlers: list[Expected] | None = None,
    fitting: dict[str, str] | None = None,
) -> PlannedFile:
    """The manifest: hashes of the generated files, what they were generated from, the
    `handle` signature each receive operation's module must have (checked on every run,
    the fast path included) and the modules found to have it, by the hash of their
    content and signature, so that a later run parses only the ones changed since."""
    data: dict[str, Any] = {
        "asyncgen": tool_version,
        "files": {f.path: digest(f.content) for f in plan if f.owner == "generated"},
        "user_files": sorted(f.path for f in plan if f.owner == "user"),
        "inputs": inputs.files,
        "settings": settings.recorded(),
        "fingerprint": fingerprint,
    }
    if inputs.remote:
        data["remote"] = inputs.remote
    if handlers:
        data["handlers"] = [asdict(expected) for expected in handlers]
    if fitting:
        data["fitting_handlers"] = dict(sorted(fitting.items()))
    return PlannedFile(MANIFEST, json.dumps(data, indent=2, sort_keys=True) + "\n", "generated")


def _cached_digest(url: str) -> str | None:
    content = cache.get_remote(url)
    return None if content is None else hashlib.sha256(content).hexdigest()


def up_to_date(
    project: Path,
    requested: Settings,
    template_folders: list[Path],
    version: str,
) -> bool:
    """Whether generating into `project` with these settings would change nothing.

    `requested.protocol` and `requested.package` may be empty, meaning "as before".
    A remote document counts as it is in the cache: when the cache lacks it, generation
    fetches it again.
    """
    manifest = read(project)
    recorded = manifest.get("settings")
    inputs = manifest.get("inputs")
    remote = manifest.get("remote", {})
    files = manifest.get("files")
    user_files = manifest.get("user_files")
    if not (
        isinstance(recorded, dict)
        and isinstance(inputs, list)
        and isinstance(remote, dict)
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
        allow_remote_refs=requested.allow_remote_refs,
        mqtt_client=requested.mqtt_client,
    )
    if settings.recorded() != recorded:
        return False
    recorded_inputs = Inputs([str(i) for i in inputs], {str(k): str(v) for k, v in remote.items()})
    current = fingerprint(
        project,
        recorded_inputs,
        settings,
        template_folders,
        version,
        {url: _cached_digest(url) for url in recorded_inputs.remote},
    )
    if current is None or current != manifest.get("fingerprint"):
        return False
    for path, expected in files.items():
        if file_digest(project / path) != expected:
            return False
    return all((project / str(path)).exists() for path in user_files)
