"""The README is the short version of the docs site and stays in step with it: its Celery feature table
is the one docs/porting.md shows, every page it links to exists (mkdocs checks the site's own links,
not the README's), and every page under docs/ is in the site's navigation."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
HEADER = "| area | has, as in Celery | has differently | lacks |"


def feature_table(text: str) -> list[str]:
    """The rows of the has/differs/lacks table, with link targets dropped (the README links to
    docs/x.md and its own sections, the site to x.md)."""
    start = text.index(HEADER)
    end = text.find("\n\n", start)
    rows = text[start : end if end != -1 else None].splitlines()
    return [re.sub(r"\[([^\]]*)\]\([^)]*\)", "", row) for row in rows]


def test_the_feature_table_is_the_same_in_the_readme_and_the_porting_page() -> None:
    readme = feature_table(README.read_text())
    porting = feature_table((DOCS / "porting.md").read_text())
    assert len(readme) > 5
    assert [r.split(" | ")[0] for r in readme] == [r.split(" | ")[0] for r in porting]
    for ours, theirs in zip(readme, porting):
        # the same cells, except the words of a link (the README says "below", the site names the page)
        assert re.sub(r"\(\s*\)", "()", ours).replace("()", "") == re.sub(r"\(\s*\)", "()", theirs).replace(
            "()", ""
        ), (ours, theirs)


def test_every_file_the_readme_links_to_exists() -> None:
    text = README.read_text()
    targets = re.findall(r"\]\(((?:docs|benchmarks)/[^)#\s]+)", text)
    assert targets
    missing = sorted({t for t in targets if not (REPO / t).exists()})
    assert missing == []


def test_every_readme_anchor_is_a_heading_of_the_readme() -> None:
    text = README.read_text()
    slugs = {
        re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower())
        for h in re.findall(r"^#+ (.+)$", text, re.M)
    }
    anchors = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert anchors <= slugs, sorted(anchors - slugs)


def test_every_docs_page_is_in_the_nav() -> None:
    nav = (REPO / "mkdocs.yml").read_text().split("\nnav:", 1)[1]
    pages = {p.name for p in DOCS.glob("*.md")}
    assert sorted(p for p in pages if p not in nav) == []
