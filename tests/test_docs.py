"""The docs a newcomer opens stay readable and whole: the README's quick start fits on a screen and every relative
link in the README and docs/ leads to a file that exists (and to a heading there, for `#anchor` links)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a file's headings."""
    heads = re.findall(r"^#+\s+(.*)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in heads}


def test_the_readme_reads_in_a_few_minutes() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 80, len(lines)
    prose = [line for line in lines if line and not line.startswith(("|", " ", "```", "make"))]
    assert all(len(line) <= 120 for line in prose), [line for line in prose if len(line) > 120]


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file.read_text())):
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []
