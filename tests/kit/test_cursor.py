"""kit/pagination.py: a cursor is a position; every string its pattern allows is one."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from notiflow.kit.errors import InvalidInput
from notiflow.kit.pagination import CURSOR_PATTERN, Cursor


def test_a_cursor_comes_back_as_the_position_it_was_made_from() -> None:
    position = Cursor(datetime(2026, 3, 29, 7, 0, 0, 123456, tzinfo=UTC), uuid.uuid4())
    encoded = position.encode()
    assert re.fullmatch(CURSOR_PATTERN, encoded)
    assert Cursor.decode(encoded) == position


@pytest.mark.parametrize("value", ["0." + "0" * 32, "99999999999999999." + "f" * 32])
def test_any_string_of_the_pattern_is_a_position(value: str) -> None:
    assert re.fullmatch(CURSOR_PATTERN, value)
    assert Cursor.decode(value).created_at.tzinfo is not None


@pytest.mark.parametrize(
    "value", ["garbage", "1." + "F" * 32, "1." + "0" * 31, "123456789012345678." + "0" * 32]
)
def test_anything_else_is_refused_with_what_to_pass(value: str) -> None:
    assert not re.fullmatch(CURSOR_PATTERN, value)
    with pytest.raises(InvalidInput, match="next_cursor"):
        Cursor.decode(value)


def test_an_empty_cursor_is_the_first_page() -> None:
    assert Cursor.from_query("") is None
    assert Cursor.from_query(None) is None
