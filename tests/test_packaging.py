"""What a packager gets: the sdist carries the LICENSE, the docs and everything its
test suite reads (so the tests pass from an unpacked sdist), its metadata names the
license as an SPDX expression, and building it prints no warning. (The wheel's
LICENSE: tests/test_integration_pytest.py, which installs a built copy.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# 77: the first setuptools with PEP 639 (`license = "SPDX"`, `license-files`).
SETUPTOOLS_FLOOR = (77,)
BUILD_TIMEOUT = 120.0
# Not part of the source: venvs, caches, build output, VCS.
NOT_SOURCE = shutil.ignore_patterns(
    *(".git", ".venv*", "build", "dist", "site", "*.egg-info"),
    *("__pycache__", ".*_cache", ".benchmarks"),
)


def _setuptools_version() -> tuple[int, ...]:
    try:
        import setuptools
    except ImportError:
        return ()
    return tuple(int(p) for p in re.findall(r"\d+", setuptools.__version__)[:2])


def _tracked(*folders: str) -> set[str]:
    """The repository's files under ``folders`` that the tests and docs read."""
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                found.add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.skipif(
    _setuptools_version() < SETUPTOOLS_FLOOR,
    reason="this venv's setuptools predates the build-system's floor (77); pip's isolated "
    "builds (test_integration_pytest.py) use a newer one",
)
def test_sdist_carries_license_docs_and_what_its_tests_read(tmp_path: Path) -> None:
    """The sdist, built by setuptools' PEP 517 backend from a copy of the source,
    holds LICENSE, mkdocs.yml, every page under docs/, every file under tests/,
    examples/ and benchmarks/, and .ci/run and .ci/floor.txt (read by test_readme.py
    and test_compat.py); PKG-INFO says License-Expression: Apache-2.0 and
    License-File: LICENSE; the build prints no warning (it warned four times that
    ``project.license`` as a TOML table is deprecated)."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = tmp_path / "dist"
    build = (
        "import sys\nfrom setuptools import build_meta\n"
        "print(build_meta.build_sdist(sys.argv[1]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run(
        [sys.executable, "-c", build, str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    warnings = [
        line for line in (done.stdout + done.stderr).splitlines() if re.search(r"(?i)warn", line)
    ]
    assert not warnings, warnings
    sdist = out / done.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        top = archive.getnames()[0].split("/", 1)[0]
        info = archive.extractfile(f"{top}/PKG-INFO")
        assert info is not None
        metadata = info.read().decode()
    wanted = {"LICENSE", "mkdocs.yml", ".ci/run", ".ci/floor.txt", "README.md", "pyproject.toml"}
    wanted |= _tracked("docs", "tests", "examples", "benchmarks")
    assert wanted - names == set(), f"missing from the sdist: {sorted(wanted - names)}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "License-Expression: Apache-2.0" in metadata.splitlines(), metadata[:600]
    assert "License-File: LICENSE" in metadata.splitlines(), metadata[:600]


def test_license_is_the_apache_2_0_text() -> None:
    """LICENSE holds the Apache License 2.0 the metadata names, whole (its terms and
    the appendix)."""
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()
