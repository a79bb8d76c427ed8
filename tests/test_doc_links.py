"""Every relative link in README.md and docs/**/*.md resolves: the file exists and, for a
``#fragment``, the target file has a heading with that GitHub anchor. Results live in
docs/experiments/ and README links to them, so a renamed file or heading would otherwise break
the README's lead section silently.

Also checks that README keeps CI's ``command:install`` / ``command:test`` blocks (.ci/run reads
them out of README).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# [text](target) and ![alt](target); a target has no spaces (titles are not used in these docs).
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~)")


def github_anchor(heading: str) -> str:
    """GitHub's heading slug (github-slugger): lower case; keep letters, marks, numbers,
    connector punctuation (``_``), hyphens and spaces; spaces become hyphens."""
    text = re.sub(r"`|\*\*|\*", "", heading.strip()).lower()
    kept = "".join(
        ch for ch in text if ch in "- " or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc"
    )
    return kept.replace(" ", "-")


def _prose_lines(text: str) -> list[str]:
    """Lines outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_anchor(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        result.add(slug if n == 0 else f"{slug}-{n}")
    return result


def links(path: Path) -> list[str]:
    found = []
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)  # links inside inline code are not links
        found += _LINK.findall(line)
    return found


def test_github_anchor_matches_githubs_slugs():
    assert github_anchor("Set up and run (two commands)") == "set-up-and-run-two-commands"
    assert github_anchor("Methods, baselines and statistics") == "methods-baselines-and-statistics"
    assert github_anchor("A 4×4 map at 32 px (measured 2026-11-23)") == "a-44-map-at-32-px-measured-2026-11-23"
    assert github_anchor("More episodes: `vision.episode_steps`") == "more-episodes-visionepisode_steps"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    broken = []
    for target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        dest = doc if not file_part else (doc.parent / file_part).resolve()
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{fragment} in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_links_every_experiment_page():
    readme_links = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md") if t.partition("#")[0]}
    pages = sorted((ROOT / "docs" / "experiments").glob("*.md"))
    assert pages, "docs/experiments/ has no study pages"
    missing = [p.name for p in pages if p.resolve() not in readme_links]
    assert not missing, f"README.md does not link these studies: {missing}"


def test_readme_keeps_the_ci_command_blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("install", "test"):
        assert re.search(rf"^<!-- command:{name} -->\n```bash\n.+\n```$", text, re.M), name
