"""The docs keep up with the code: every PoolConfig field is in the configuration
reference, every public name is documented somewhere, and every page is in the
MkDocs nav. (Links and anchors are checked by ``mkdocs build --strict`` in .ci/run.)"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import grpc_pool

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def docs_text() -> str:
    return "\n".join(page.read_text() for page in sorted(DOCS.glob("**/*.md")))


def test_every_config_field_is_in_the_configuration_reference() -> None:
    """A PoolConfig field added without a row in docs/configuration.md fails here."""
    reference = (DOCS / "configuration.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \|", reference, flags=re.MULTILINE))
    missing = [f.name for f in dataclasses.fields(grpc_pool.PoolConfig) if f.name not in rows]
    assert not missing, f"document these PoolConfig fields in docs/configuration.md: {missing}"


def test_every_public_name_appears_in_the_docs() -> None:
    """Every name in grpc_pool.__all__ is mentioned somewhere under docs/."""
    text = docs_text()
    missing = [name for name in grpc_pool.__all__ if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"mention these public names somewhere in docs/: {missing}"


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    """mkdocs.yml's nav lists exactly the Markdown files under docs/."""
    config = (ROOT / "mkdocs.yml").read_text()
    nav = config[config.index("\nnav:") :]
    entries = re.findall(r"^\s+- [^:\n]+: (\S+\.md)\s*$", nav, flags=re.MULTILINE)
    pages = sorted(str(page.relative_to(DOCS)) for page in DOCS.glob("**/*.md"))
    assert sorted(entries) == pages
    assert len(entries) == len(set(entries))
