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


# A benchmark figure as pages quote it: a time in ns or us, or a ratio with two decimals.
FIGURE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?) ?(ns|us|µs)\b|(?<![\w.])(\d+\.\d\dx)\b")


def figures(text: str) -> set[str]:
    return {f"{m[1]} {m[2].replace('µs', 'us')}" if m[2] else m[3] for m in FIGURE.finditer(text)}


def prose(text: str) -> str:
    """A page without its fenced code blocks (command output, code)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def results_tables() -> str:
    """docs/performance.md's two tables of measured figures (the one place they live)."""
    page = (DOCS / "performance.md").read_text()
    results = page[page.index("## Results") : page.index("### Targets")]
    return "\n".join(line for line in results.splitlines() if line.startswith("|"))


def quoting_text() -> dict[str, str]:
    """Every page's prose, minus performance.md's tables themselves and its history."""
    pages = {"README.md": (ROOT / "README.md").read_text()}
    pages |= {str(p.relative_to(ROOT)): p.read_text() for p in sorted(DOCS.glob("**/*.md"))}
    perf = pages["docs/performance.md"]
    history = perf[perf.index("### Earlier runs") : perf.index("## How to reproduce")]
    perf = perf.replace(history, "")
    pages["docs/performance.md"] = "\n".join(
        line for line in perf.splitlines() if not line.startswith("|")
    )
    return {name: prose(text) for name, text in pages.items()}


def test_quoted_figures_match_the_performance_table() -> None:
    """A benchmark figure (ns, us, or a two-decimal ratio) quoted on any page, the
    performance page's own prose included, is one of docs/performance.md's results:
    a page cannot go on quoting a figure from an older run."""
    measured = figures(results_tables())
    assert len(measured) > 20  # the tables themselves were found and read
    stale = {
        name: sorted(figures(text) - measured)
        for name, text in quoting_text().items()
        if figures(text) - measured
    }
    assert not stale, f"figures not in docs/performance.md's results tables: {stale}"


# What once contradicted the transparent retry (on by default) and the opt-in
# RetryPolicy: "the pool does not retry RPCs", a FAQ answering "No.".
NO_RETRY_CLAIM = re.compile(
    r"\b(?:pool|it) (?:does not|doesn't|never) retr(?:y|ies) (?:failed )?RPCs"
    r"|retry failed RPCs\?\s+No\b",
    flags=re.IGNORECASE,
)


def test_no_page_or_docstring_says_the_pool_never_retries() -> None:
    """One story about retries: no page, README or module of the package says the
    pool does not retry RPCs (it sends again what never reached a server)."""
    texts = {"README.md": (ROOT / "README.md").read_text()}
    texts |= {str(p.relative_to(ROOT)): p.read_text() for p in sorted(DOCS.glob("**/*.md"))}
    package = ROOT / "grpc_pool"
    texts |= {str(p.relative_to(ROOT)): p.read_text() for p in sorted(package.glob("**/*.py"))}
    found = {name: NO_RETRY_CLAIM.search(text) for name, text in texts.items()}
    claims = {name: match.group(0) for name, match in found.items() if match}
    assert not claims, f"these say the pool does not retry: {claims}"
