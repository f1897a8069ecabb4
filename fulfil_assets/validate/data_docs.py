"""Great Expectations' Data Docs made self-contained: GX's pages load Bootstrap, jQuery, bootstrap-table and Font
Awesome from CDNs (and GX's logo from S3), so on a machine with no way out they are unstyled and the index (filled
in by bootstrap-table) lists nothing. After each build every page loses its CDN tags and gains a small local
stylesheet, and the index is written as plain HTML: every validation run (newest first, with its outcome) and
every suite, as links."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

REMOTE = re.compile(
    r"<script\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>|<(?:link|img)\b[^>]*\b(?:href|src)=\"https?://[^\"]*\"[^>]*>",
    re.IGNORECASE,
)
STATUS = re.compile(r"Status:</span>\s*<i[^>]*></i>\s*(Succeeded|Failed)")
STYLESHEET = "static/styles/fulfil_offline.css"
CSS = """body { font: 14px/1.45 system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #1d2330; }
table { border-collapse: collapse; margin: .5rem 0 1rem; width: 100%; }
th, td { border: 1px solid #d5d9e0; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f1f3f6; }
a { color: #2457c5; }
.failed { color: #b42318; font-weight: 600; }
.succeeded { color: #067647; font-weight: 600; }
nav, .navbar, .sticky, .ge-footer, footer { display: none; }
.card { border: 1px solid #d5d9e0; border-radius: 4px; padding: .5rem 1rem; margin: .75rem 0; }
.collapse:not(.show) { display: block; }
.text-danger { color: #b42318; } .text-success { color: #067647; }
img { max-width: 100%; }
"""


def _with_local_style(text: str, page: Path, root: Path) -> str:
    """The page without its CDN tags, with the local stylesheet linked relative to where it sits."""
    href = os.path.relpath(root / STYLESHEET, page.parent)
    return REMOTE.sub("", text).replace("</head>", f'<link rel="stylesheet" href="{href}"/>\n</head>', 1)


def index_html(root: Path) -> str:
    """The index as plain HTML: validation runs newest first (suite, run time, outcome) and the suites."""
    runs = []
    for page in root.glob("validations/*/*/*/*.html"):
        suite, _, run_time, _ = page.relative_to(root).parts[1:]
        found = STATUS.search(page.read_text(encoding="utf-8", errors="replace"))
        runs.append((run_time, suite, found.group(1) if found else "unknown", page.relative_to(root).as_posix()))
    rows = "".join(
        f'<tr><td><a href="{html.escape(link)}">{html.escape(when)}</a></td><td>{html.escape(suite)}</td>'
        f'<td class="{outcome.lower()}">{outcome}</td></tr>\n'
        for when, suite, outcome, link in sorted(runs, reverse=True)
    )
    suites = "".join(
        f'<li><a href="{html.escape(p.relative_to(root).as_posix())}">{html.escape(p.stem)}</a></li>\n'
        for p in sorted(root.glob("expectations/*.html"))
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>fulfil: validation results</title>\n'
        f'<link rel="stylesheet" href="{STYLESHEET}"/></head><body>\n'
        "<h1>Validation results</h1>\n<p>Every order sync validates the orders with the Great Expectations suites in "
        "<code>expectations/</code>; each run's page lists every rule and the orders it held back.</p>\n"
        f"<table><tr><th>run (UTC)</th><th>suite</th><th>outcome</th></tr>\n{rows}</table>\n"
        f"<h2>Suites</h2>\n<ul>\n{suites}</ul>\n</body></html>\n"
    )


def make_self_contained(root: Path) -> Path:
    """Strip every page under `root` of CDN tags, give it the local stylesheet, and write the plain index; returns
    the index. Pages already made self-contained are left as they are."""
    (root / STYLESHEET).parent.mkdir(parents=True, exist_ok=True)
    (root / STYLESHEET).write_text(CSS, encoding="utf-8")
    for page in root.rglob("*.html"):
        if page == root / "index.html":
            continue
        text = page.read_text(encoding="utf-8", errors="replace")
        if STYLESHEET.rsplit("/", 1)[-1] not in text:
            page.write_text(_with_local_style(text, page, root), encoding="utf-8")
    index = root / "index.html"
    index.write_text(index_html(root), encoding="utf-8")
    return index
