"""jsonschema-rs as a quick first answer to "is this value valid against that schema?".

It answers for a valid value in a fraction of jsonschema's time; jsonschema, which
explains each problem, then runs only where the answer is no. Whatever jsonschema-rs
cannot take (the package missing, a schema it refuses, a value it cannot convert such as
NaN) is a no as well, so that the full check decides: erring towards no costs only time.
"""

from __future__ import annotations

from typing import Any, Literal


def quick_validator(schema: dict[str, Any], draft: Literal[7, 2020]) -> Any:
    """jsonschema-rs's validator of `schema` (formats not checked), or None."""
    try:
        import jsonschema_rs
    except ImportError:
        return None
    kind = jsonschema_rs.Draft7Validator if draft == 7 else jsonschema_rs.Draft202012Validator
    try:
        return kind(schema, validate_formats=False)
    except Exception:  # a schema it does not take
        return None


def quickly_valid(validator: Any, value: Any) -> bool:
    """Whether `validator` (from `quick_validator`, or None) finds `value` valid."""
    if validator is None:
        return False
    try:
        return bool(validator.is_valid(value))
    except Exception:  # a value it cannot convert
        return False
