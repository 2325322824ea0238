"""The documentation speaks of notiflow itself: every relative link in README.md and docs/ leads to
a file of the repository, and no text (docs, help, comments, benchmarks) points a reader to a
document that the repository does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = sorted(
    [
        ROOT / "README.md",
        ROOT / "BENCHMARKS.md",
        *(ROOT / "docs").rglob("*.md"),
        *(ROOT / "deploy").rglob("*.md"),
    ]
)
# Every text a user or a newcomer reads: the package (help texts and docstrings), the docs, the
# benchmarks, the deployment files and the Makefile.
TEXTS = [
    *MARKDOWN,
    *(ROOT / "src").rglob("*.py"),
    *(ROOT / "bench").rglob("*.py"),
    *(ROOT / "src").rglob("*.html"),
    *(ROOT / "deploy").rglob("*.*"),
    ROOT / "Makefile",
]
# Sections of documents that are not in the repository ("spec 003 §8", "DESIGN §5", "§10").
OUTSIDE_REFERENCE = re.compile(
    r"\bspec\s+00\d\b|\bDESIGN\b\s*(?:§|'s\b|does\b)|\bCONVENTIONS\.md\b"
)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_no_text_refers_to_documents_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in TEXTS
        if path.is_file()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE_REFERENCE.search(line)
    ]
    assert not found, "references to documents the repository does not have:\n" + "\n".join(found)


@pytest.mark.parametrize("document", MARKDOWN, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_lead_to_files_of_the_repository(document: Path) -> None:
    broken = []
    for target in LINK.findall(document.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # an absolute URL (http:, mailto:) or an anchor on the same page
        path = (document.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{document.relative_to(ROOT)} links to missing files: {broken}"
