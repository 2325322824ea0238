"""README.md as a test script: its sections, its ```sh blocks, and the promises of its comments.

A block is cut into steps (one shell command each, continuation lines included); the comment
lines under a step, and a comment at the end of its line, say what it prints::

    curl -s $API/notifications/unread-count -H "$AUTH"      # {"data":{"count":1}}

:func:`promise` reads such a comment as a pattern: a JSON object where ``"..."`` is any string
(``"...|..."`` any two strings around a ``|``) and a bare ``...`` stands for the fields and items
not shown; ``"deliveries": [...]`` (a field without its braces) is a field of some object of the
output. :func:`ledger_promise` reads the prose form ``email: suppressed, "user_global_off"``.
The tests run the steps with bash, one ``@@step N`` marker line before each, and match each
step's output against its promises.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
STEP_MARKER = "@@step"
BASH = shutil.which("bash") or "/bin/bash"


def section(heading: str, text: str | None = None) -> str:
    """The text under ``heading`` (a whole heading line, e.g. ``### PostgreSQL and Redis``) up
    to the next heading of the same or a higher level."""
    text = README.read_text() if text is None else text
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    assert heading in lines, f"README.md has no heading {heading!r}"
    start = lines.index(heading) + 1
    body: list[str] = []
    for line in lines[start:]:
        match = re.match(r"(#+) ", line)
        if match and len(match.group(1)) <= level and not body_in_fence(body):
            break
        body.append(line)
    return "\n".join(body)


def body_in_fence(lines: list[str]) -> bool:
    return sum(1 for line in lines if line.startswith("```")) % 2 == 1


def shell_blocks(text: str) -> list[str]:
    """The ```sh blocks of ``text``, in order."""
    return [match.group(1) for match in re.finditer(r"^```sh\n(.*?)^```$", text, re.M | re.S)]


def paragraph(start: str, text: str | None = None) -> str:
    """The paragraph of README.md that begins with ``start``."""
    text = README.read_text() if text is None else text
    for block in re.split(r"\n\s*\n", text):
        if block.lstrip().startswith(start):
            return block
    raise AssertionError(f"README.md has no paragraph starting with {start!r}")


def code_spans(text: str) -> list[str]:
    """The `inline code` of ``text``, line breaks inside a span read as spaces."""
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", text)]


def replace_each(text: str, edits: dict[str, str]) -> str:
    """``text`` with each edit applied; each must apply, so a README change that a test no
    longer understands fails it instead of silently testing something else."""
    for old, new in edits.items():
        assert old in text, f"README.md no longer has {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class Step:
    command: str
    # JSON-like comments about its output, and the other comments under it.
    promises: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _complete(command: str) -> bool:
    """Whether bash reads ``command`` as whole commands (no open quote, no ``\\`` at the end)."""
    if command.rstrip().endswith("\\"):
        return False
    checked = subprocess.run(  # noqa: S603 - bash -n only parses
        [BASH, "-n", "-c", command], capture_output=True, text=True, check=False
    )
    return checked.returncode == 0


def steps(block: str) -> list[Step]:
    """The commands of a shell block, each with the comments that promise its output."""
    found: list[Step] = []
    pending: list[str] = []
    comment: list[str] = []
    for line in block.splitlines():
        if not pending and line.lstrip().startswith("#"):
            text = line.lstrip()[1:].strip()
            if comment or text.startswith(("{", '"')):
                comment.append(text)
                if _balanced(" ".join(comment)):
                    assert found, f"a promise before any command: {comment}"
                    found[-1].promises.append(" ".join(comment))
                    comment = []
            elif found:
                found[-1].notes.append(text)
            continue
        if not pending and not line.strip():
            continue
        pending.append(line)
        command = "\n".join(pending)
        if _complete(command):
            step = Step(command)
            trailing = re.search(r"\s#\s*(\{.*\})\s*$", line)
            if trailing:
                step.promises.append(trailing.group(1))
            found.append(step)
            pending = []
    assert not pending, f"an unfinished command: {pending}"
    assert not comment, f"an unfinished promise: {comment}"
    return found


def _balanced(text: str) -> bool:
    depth = 0
    for character in re.sub(r'"(?:[^"\\]|\\.)*"', '""', text):
        depth += character in "{["
        depth -= character in "}]"
    return depth == 0


def script(all_steps: list[Step], prelude: str = "") -> str:
    """One bash script running ``all_steps`` in order, a marker line before each."""
    lines = ["set -eo pipefail", prelude]
    for index, step in enumerate(all_steps):
        lines.append(f"echo {STEP_MARKER} {index}")
        lines.append(step.command)
    return "\n".join(lines) + "\n"


def outputs(stdout: str) -> dict[int, str]:
    """What each step printed, by its index (the marker lines of :func:`script`)."""
    printed: dict[int, list[str]] = {}
    current = -1
    for line in stdout.splitlines():
        if line.startswith(f"{STEP_MARKER} "):
            current = int(line.split()[1])
            printed[current] = []
        elif current >= 0:
            printed[current].append(line)
    return {index: "\n".join(lines) for index, lines in printed.items()}


# ------------------------------------------------------------------------- promises


def promise(comment: str) -> Any:
    """The pattern a JSON-like comment describes (see the module's docstring)."""
    text = comment.strip()
    if text.startswith('"'):
        text = "{" + text + "}"
    # A bare ... (outside strings) as a field or an item: allowed, and ignored.
    pieces = re.split(r'("(?:[^"\\]|\\.)*")', text)
    for index in range(0, len(pieces), 2):
        pieces[index] = re.sub(r",\s*\.\.\.", "", pieces[index])
        pieces[index] = re.sub(r"\.\.\.\s*,?", "", pieces[index])
    return json.loads("".join(pieces))


def matches(actual: Any, pattern: Any) -> bool:
    """Whether ``actual`` is what ``pattern`` promises: objects have at least the promised
    fields, lists hold the promised items in order (others may be around them), strings with
    ``...`` match any text there."""
    if isinstance(pattern, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(actual[key], value) for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        if not isinstance(actual, list):
            return False
        items: Iterator[Any] = iter(actual)
        return all(any(matches(item, wanted) for item in items) for wanted in pattern)
    if isinstance(pattern, str) and "..." in pattern:
        regex = ".+".join(re.escape(part) for part in pattern.split("..."))
        return isinstance(actual, str) and re.fullmatch(regex, actual) is not None
    return bool(actual == pattern and type(actual) is type(pattern))


def found_in(actual: Any, pattern: Any) -> bool:
    """Whether ``actual`` or an object inside it matches ``pattern``."""
    if matches(actual, pattern):
        return True
    if isinstance(actual, dict):
        return any(found_in(value, pattern) for value in actual.values())
    if isinstance(actual, list):
        return any(found_in(item, pattern) for item in actual)
    return False


def ledger_promise(comment: str) -> list[dict[str, str]] | None:
    """``email: suppressed, "user_global_off";  push: suppressed, "user_type_off"`` as ledger
    entries; None for any other comment."""
    entries = re.findall(r'(\w+): (\w+), "(\w+)"', comment)
    if not entries:
        return None
    return [
        {"channel": channel, "status": status, "reason": reason}
        for channel, status, reason in entries
    ]


__all__ = [
    "BASH",
    "README",
    "Step",
    "code_spans",
    "found_in",
    "ledger_promise",
    "matches",
    "outputs",
    "paragraph",
    "promise",
    "replace_each",
    "script",
    "section",
    "shell_blocks",
    "steps",
]
