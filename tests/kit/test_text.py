"""kit/text.py: the not-blank pattern the OpenAPI document states is the rule the validators
apply, character for character."""

from __future__ import annotations

import re
import sys

import pytest

from notiflow.kit.text import NOT_BLANK_PATTERN, WHITESPACE_CLASS, require_text


def test_the_whitespace_class_is_what_str_strip_removes() -> None:
    whitespace = re.compile(f"[{WHITESPACE_CLASS}]")
    differing = [
        hex(code)
        for code in range(sys.maxunicode + 1)
        if bool(whitespace.fullmatch(chr(code))) != chr(code).isspace()
    ]
    assert differing == []


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("Hello", True),
        ("  padded  ", True),
        ("line\nbreak", True),
        ("", False),
        (" \t\n", False),
        ("\u3000\u2028\x1f", False),  # whitespace to Python, though not all of it to ECMA's \s
        ("NUL\x00inside", False),
    ],
)
def test_the_pattern_and_the_validator_agree(value: str, accepted: bool) -> None:
    assert bool(re.fullmatch(NOT_BLANK_PATTERN, value)) is accepted
    if accepted:
        assert require_text(value, "content") == value
    else:
        with pytest.raises(ValueError, match="content must not"):
            require_text(value, "content")
