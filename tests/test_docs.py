"""The documentation's Python examples run, against LocalECR, as written."""

from __future__ import annotations

import inspect
import pathlib
import re

import pytest

from ecr_layers.testing import LocalECR

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PAGES = [
    page
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if BLOCK.search(page.read_text())
]


def test_there_are_examples_to_run() -> None:
    assert sum(len(BLOCK.findall(p.read_text())) for p in PAGES) >= 4


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_run(page: pathlib.Path, local_ecr: LocalECR, tmp_path: pathlib.Path) -> None:
    blocks = BLOCK.findall(page.read_text())
    [digest] = local_ecr.push_image("team/app", [b"an example layer"])
    # Names the prose introduces: a layer's digest and a directory to download to.
    namespace: dict[str, object] = {"digest": digest, "tmp_dir": tmp_path}
    for block in blocks:
        exec(compile(block, f"{page.name}:example", "exec"), namespace)
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            # Examples written as pytest tests take their fixtures by name, as pytest
            # would give them: local_ecr, and tmp_path (this test's own, removed by pytest).
            fixtures = {"local_ecr": local_ecr, "tmp_path": tmp_path}
            value(**{p: fixtures[p] for p in inspect.signature(value).parameters})
