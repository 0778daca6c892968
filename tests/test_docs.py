"""The docs match the code: the README's model example is the file it names, every make
target and every repository path the docs mention exists, every link resolves."""

import re
import subprocess
from pathlib import Path

import pytest

from overnight.models.catalog import load_catalog

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _targets() -> set[str]:
    """Every target the Makefile defines (make -p, nothing run)."""
    out = subprocess.run(["make", "-C", str(REPO), "-pn", "--no-print-directory", "help"],
                         capture_output=True, text=True, timeout=60, check=False).stdout
    return {m[1] for m in re.finditer(r"^([a-zA-Z][\w.-]*):(?!=)", out, re.MULTILINE)}


def test_the_readme_shows_the_example_model_as_it_is():
    readme = (REPO / "README.md").read_text()
    example = (REPO / "examples" / "wide.py").read_text()
    assert f"```python\n{example}```" in readme
    assert 'extra_models = ["examples/wide.py"]' in readme


def test_the_readme_is_short_and_starts_with_the_two_commands():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 160
    first_block = lines[lines.index("```bash") + 1:]
    assert first_block[0].startswith("make demo") and first_block[1].startswith("make test")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_make_target_the_docs_name_exists(page):
    targets = _targets()
    models = set(load_catalog().names) | {"<model>", "<name>", "wide"}
    # in code: a `make ...` span, or a line of a code block
    named = set(re.findall(r"(?:^\s*|`)make (?:[^\s`]+=[^\s`]+ |-[^\s`]+ )*([a-z][\w<>-]*)",
                           page.read_text(), re.MULTILINE))
    unknown = {t for t in named - targets
               if not (t.startswith("train-") and t.removeprefix("train-") in models)}
    assert unknown == set()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_path_and_link_the_docs_name_exists(page):
    text = page.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    paths = re.findall(r"`((?:lib|jobs|bench|tests|docs|configs|scripts|docker|examples)/"
                       r"[\w./-]*\w)`", text)
    missing = [p for p in links if not p.startswith("http") and not (page.parent / p).exists()]
    missing += [p for p in paths if "<" not in p and "*" not in p and not (REPO / p).exists()]
    assert missing == []
