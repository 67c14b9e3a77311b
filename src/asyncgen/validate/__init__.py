"""Stage 2: check a loaded document against AsyncAPI's rules and what generation needs.

This is the only stage that checks the document: `generate` runs exactly these checks,
so `validate` and `generate` never disagree, and the later stages trust what passed.
"""

from dataclasses import dataclass, field

from asyncgen.asyncapi import Protocol, server_protocol
from asyncgen.errors import Level, Problem
from asyncgen.load import Document, Ref
from asyncgen.validate.bindings import check_bindings
from asyncgen.validate.examples import check_examples
from asyncgen.validate.payloads import check_payload_schemas
from asyncgen.validate.semantic import check_semantics
from asyncgen.validate.structure import check_structure


def _target(doc: Document, requested: Protocol | None) -> Protocol | None:
    servers = doc.data.get("servers")
    protocols = [
        str(server.get("protocol", "")).lower()
        for server in (servers.values() if isinstance(servers, dict) else [])
        if isinstance(server, dict)
    ]
    return server_protocol(protocols, requested)


@dataclass
class Checked:
    """What validation found: every problem, and the examples that fit no schema (the
    generated tests leave them out)."""

    problems: list[Problem]
    unfit_examples: set[Ref] = field(default_factory=set)


def check_document(doc: Document, protocol: Protocol | None = None) -> Checked:
    """Every problem at once: the structure, the rules beyond it, the bindings, the
    payload schemas and the examples, in one run. Addresses are checked against
    `protocol`, by default the one the document's servers speak."""
    problems = check_structure(doc)
    problems.extend(check_semantics(doc, _target(doc, protocol)))
    problems.extend(check_bindings(doc))
    problems.extend(check_payload_schemas(doc))
    unfit: set[Ref] = set()
    if not any(problem.level == Level.ERROR for problem in problems):
        # Examples are checked against schemas known to be sound.
        example_problems, unfit = check_examples(doc)
        problems.extend(example_problems)
    return Checked(_sorted(problems), unfit)


def validate_document(doc: Document, protocol: Protocol | None = None) -> list[Problem]:
    """Every problem of the document (see `check_document`)."""
    return check_document(doc, protocol).problems


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        unique.setdefault((str(problem.location), problem.message), problem)
    return sorted(
        unique.values(),
        key=lambda p: (
            p.level != Level.ERROR,
            str(p.location.file),
            p.location.line,
            p.location.column,
            p.message,
        ),
    )


__all__ = [
    "Checked",
    "check_bindings",
    "check_document",
    "check_examples",
    "check_payload_schemas",
    "check_semantics",
    "check_structure",
    "validate_document",
]
