"""Text a request may carry: not blank, and storable; the OpenAPI document states the same rule.

``str.strip()`` decides what is blank in Python; a JSON Schema ``pattern`` is an ECMA-262 regex,
whose ``\\s`` is another set. :data:`NOT_BLANK_PATTERN` names the characters ``str.isspace()``
counts, one by one, so the schema and the validator agree on every string::

    name: Annotated[str, Field(json_schema_extra={"pattern": NOT_BLANK_PATTERN})]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return require_text(value, "name")
"""

from __future__ import annotations

import re

# Exactly the characters for which str.isspace() is true (tests/kit/test_text.py checks all).
WHITESPACE_CLASS = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# At least one character that is not whitespace, and no NUL anywhere (PostgreSQL cannot store it).
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE_CLASS}][^\x00]*$"
_NOT_BLANK = re.compile(NOT_BLANK_PATTERN)
# Any text without NUL.
NO_NUL_PATTERN = r"^[^\x00]*$"


def require_text(value: str, what: str) -> str:
    """``value`` when it has a character that is not whitespace and no NUL; ``ValueError``
    naming ``what`` otherwise."""
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    if _NOT_BLANK.fullmatch(value) is None:
        raise ValueError(f"{what} must not be blank")
    return value
