"""The house's layout, kept: packages a reader can take in, and one room per edge."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import allocation

SERVICE = Path(allocation.__file__).parent
# Past this many lines a package is split by what it holds (adapters by what they
# adapt, entrypoints by edge), so a newcomer still sees at a glance where to look.
PACKAGE_LINES = 2_000
EDGES = ("api", "workers", "cli")


def _lines(package: Path) -> int:
    return sum(len(module.read_text().splitlines()) for module in package.glob("*.py"))


def test_no_package_of_the_service_outgrows_a_reader() -> None:
    packages = {init.parent for init in SERVICE.rglob("__init__.py")}
    sizes = {str(p.relative_to(SERVICE)): _lines(p) for p in packages}
    assert sum(sizes.values()) > 5_000  # the count reads what it should
    assert {name: n for name, n in sizes.items() if n > PACKAGE_LINES} == {}


def test_each_edge_is_a_package_that_says_in_one_line_what_comes_in_through_it() -> None:
    for edge in EDGES:
        package = importlib.import_module(f"allocation.entrypoints.{edge}")
        docstring = ast.get_docstring(ast.parse(Path(str(package.__file__)).read_text()))
        assert docstring is not None and "\n" not in docstring, edge
        assert "come in" in docstring, docstring
