"""Stage 2: check a loaded document against AsyncAPI's rules."""

from asyncgen.errors import Level, Problem
from asyncgen.load import Document
from asyncgen.validate.payloads import check_payload_schemas
from asyncgen.validate.semantic import check_semantics
from asyncgen.validate.structure import check_structure


def validate_document(doc: Document) -> list[Problem]:
    """Every problem at once: the document's structure, then the rules beyond it.

    The semantic checks assume a well-formed document, so they run only when the
    structure holds no error; the payload schemas are checked once references resolve.
    """
    problems = check_structure(doc)
    if not any(problem.level == Level.ERROR for problem in problems):
        problems.extend(check_semantics(doc))
    if not any(problem.level == Level.ERROR for problem in problems):
        problems.extend(check_payload_schemas(doc))
    return problems


__all__ = ["check_payload_schemas", "check_semantics", "check_structure", "validate_document"]
