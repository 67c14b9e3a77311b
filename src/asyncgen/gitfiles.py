"""A document as it was at a git revision: `git:REV:path`, for `asyncgen diff`."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path


class GitError(Exception):
    """The revision or the path cannot be read from git; the message says why."""


def _git(*args: str, cwd: Path) -> bytes:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=120)
    except FileNotFoundError as exc:
        raise GitError("git is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} took longer than 120 s") from exc
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(message[-1] if message else f"git {args[0]} failed")
    return result.stdout


def checkout_file(argument: str, into: Path, cwd: Path | None = None) -> tuple[Path, Path]:
    """Write the repository's tree at REV into `into` and return the document's path there
    and the tree's root (which its local `$ref`s may reach, as in the working tree).

    `argument` is `git:REV:path`, the path relative to the current folder as git reads
    it; REV is anything `git rev-parse` understands (a branch, a tag, `HEAD~1`).
    """
    here = (cwd or Path.cwd()).resolve()
    _, _, rest = argument.partition(":")
    revision, separator, path = rest.rpartition(":")
    if not separator or not revision or not path:
        raise GitError("expected git:REV:path, for example git:origin/main:asyncapi.yaml")
    top = Path(_git("rev-parse", "--show-toplevel", cwd=here).decode().strip())
    prefix = _git("rev-parse", "--show-prefix", cwd=here).decode().strip()
    try:
        commit = _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", cwd=top)
    except GitError:
        raise GitError(f"{revision!r} is no revision of the repository at {top}") from None
    archive = _git("archive", "--format=tar", commit.decode().strip(), cwd=top)
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    document = (into / prefix / path).resolve()
    if not document.is_relative_to(into.resolve()):
        raise GitError(f"{path} is outside the repository")
    if not document.is_file():
        raise GitError(f"{prefix}{path} does not exist at {revision}")
    return document, into
