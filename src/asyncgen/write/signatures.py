"""Check the user's handler modules against what the spec now asks of them.

The handlers are the user's code and are never rewritten; when the spec changes a
message type, a channel's parameters or a reply, the matching `handle` no longer fits.
mypy would say so too, but this points at the line right after regeneration.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Mapping
from pathlib import Path

from asyncgen.plan import Expected

__all__ = ["Expected", "check_handler", "check_handlers", "fitting_digest"]


def _annotation(node: ast.expr | None) -> str | None:
    return None if node is None else ast.unparse(node).replace("'", "").replace('"', "")


def _types(text: str | None) -> set[str]:
    """`models.A | models.B` -> {"A", "B"}: the class names, however they were imported."""
    if text is None:
        return set()
    return {part.strip().rsplit(".", 1)[-1] for part in text.split("|")}


def fitting_digest(content: bytes, expected: Expected) -> str:
    """What the manifest records of a handler module found fitting: a hash of its content
    and of the signature it was checked against, so that it stands for both."""
    fields = (expected.module, expected.message_type, expected.params_class, expected.reply_type)
    digest = hashlib.sha256(repr(fields).encode())
    digest.update(b"\0")
    digest.update(content)
    return digest.hexdigest()


def check_handler(path: Path, expected: Expected, source: bytes | None = None) -> list[str]:
    """Problems of one handler module, each as `file:line: sentence` (`source`: its
    content, when already read)."""
    try:
        tree = ast.parse((path.read_bytes() if source is None else source).decode("utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []  # the user's code is not ours to judge beyond the signature
    handle = next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name == "handle"
        ),
        None,
    )
    if handle is None:
        return [f"{path}:1: no `handle` function (the service calls {expected.module}.handle)"]
    where = f"{path}:{handle.lineno}"
    problems: list[str] = []
    args = handle.args.posonlyargs + handle.args.args
    wanted = 3 if expected.params_class else 2
    if len(args) != wanted and handle.args.vararg is None:
        shape = "(message, params, context)" if expected.params_class else "(message, context)"
        problems.append(
            f"{where}: handle() takes {len(args)} arguments; the spec now wants {shape}"
        )
    if args:
        message = _annotation(args[0].annotation)
        if (
            message is not None
            and "Any" not in message
            and _types(message) != _types(expected.message_type)
        ):
            problems.append(
                f"{where}: handle() takes message: {message}; "
                f"the spec now sends {expected.message_type}"
            )
    if expected.params_class and len(args) == 3:
        params = _annotation(args[1].annotation)
        if params is not None and "Any" not in params and _types(params) != {expected.params_class}:
            problems.append(
                f"{where}: handle() takes params: {params}; "
                f"the channel's parameters are now {expected.params_class}"
            )
    returns = _annotation(handle.returns)
    if returns is not None and "Any" not in returns:
        if expected.reply_type is None and returns != "None":
            problems.append(f"{where}: handle() returns {returns}; the operation has no reply now")
        elif expected.reply_type is not None and _types(returns) != _types(expected.reply_type):
            problems.append(
                f"{where}: handle() returns {returns}; the reply is now {expected.reply_type}"
            )
    return problems


def check_handlers(
    folder: Path,
    expected: list[Expected],
    missing: bool = True,
    fitting: Mapping[str, str] | None = None,
    found_fitting: dict[str, str] | None = None,
) -> list[str]:
    """Problems of every handler module under `folder` that a receive operation needs,
    and (with `missing`) each such module that is not there.

    `fitting` holds the `fitting_digest` of modules found fitting before, by module
    name: a module whose content and expected signature still hash the same is not
    parsed again. Each module found fitting now is added to `found_fitting`.
    """
    problems: list[str] = []
    known = fitting or {}
    for item in expected:
        path = folder / f"{item.module}.py"
        try:
            source = path.read_bytes()
        except OSError:
            if missing and not path.is_file():
                problems.append(
                    f"{path}:1: missing: a receive operation needs this handler module "
                    "(asyncgen generate writes a stub)"
                )
            continue  # else unreadable: not ours to judge
        digest = fitting_digest(source, item)
        found = [] if known.get(item.module) == digest else check_handler(path, item, source)
        if found:
            problems.extend(found)
        elif found_fitting is not None:
            found_fitting[item.module] = digest
    return problems
