"""The README and docs/ stand on their own: every relative link points at a file of the
repository and, when it names a section, at a heading that exists there.

The README is a short front door and the rest lives in docs/ by audience; moving text
between those files is what breaks links, so they are checked rather than trusted.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_the_docs_exist_for_each_audience():
    names = {p.name for p in PAGES}
    assert {"architecture.md", "api.md", "kafka.md", "stripe.md", "operations.md",
            "benchmarks.md", "attacks.md", "decisions.md"} <= names


def test_every_relative_link_resolves_inside_the_repository():
    broken = []
    for page in PAGES:
        for target in relative_links(page):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if ROOT not in file.parents and file != ROOT:
                broken.append(f"{page.name}: {target} leaves the repository")
            elif not file.exists():
                broken.append(f"{page.name}: {target} does not exist")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.name}: {target} names no heading of {file.name}")
    assert not broken, "\n".join(broken)


def test_the_readme_stays_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, "move detail into docs/ rather than the README"
    text = "\n".join(lines)
    assert "make run" in text and "make test" in text
    assert "docs/architecture.md" in text


def test_every_test_the_docs_name_exists():
    """The attack catalogue and the other pages cite the tests that replay each case: a
    renamed or deleted test must not leave a citation behind that nothing runs."""
    sources = "\n".join(path.read_text(encoding="utf-8")
                        for folder in ("tests", "clients/python/tests")
                        for path in (ROOT / folder).rglob("test_*.py"))
    defined = set(re.findall(r"^(?:async )?def (test_\w+)", sources, re.M))
    missing = {name for page in PAGES
               for name in re.findall(r"::(test_\w+)", page.read_text(encoding="utf-8"))} - defined
    assert not missing, sorted(missing)
