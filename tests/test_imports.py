"""What imports what: the command line's modules form no cycle, and loading the pytest
plugin (which every user's test run does) imports no LocalECR server module."""

from __future__ import annotations

import ast
import graphlib
import importlib
import pathlib
import subprocess
import sys

import pytest

import ecr_layers

PACKAGE = pathlib.Path(ecr_layers.__file__).parent


def cli_modules() -> dict[str, str]:
    """The command line's modules, ``_cli``, ``_cli_*``, ``_demo``, ``__main__``: name -> source."""
    named = [PACKAGE / name for name in ("_cli.py", "_demo.py", "__main__.py")]
    paths = [*PACKAGE.glob("_cli_*.py"), *named]
    return {f"ecr_layers.{p.stem}": p.read_text() for p in paths}


def imported(module: str, source: str) -> set[str]:
    """Every module *source* imports anywhere: at the top, inside functions, for typing."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            # `from . import _cli` names a module, not an attribute.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the modules of *sources* it imports."""
    modules = sources.keys()
    return {name: imported(name, text) & (modules - {name}) for name, text in sources.items()}


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of *graph* if it has one, else None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_the_cycle_check_sees_a_cycle() -> None:
    sources = {
        "ecr_layers._cli": "from ._cli_parser import build_parser\n",
        "ecr_layers._cli_parser": "def f():\n    from . import _cli\n",
        "ecr_layers._cli_output": "import re\n",
    }
    graph = import_graph(sources)
    assert graph["ecr_layers._cli_parser"] == {"ecr_layers._cli"}
    assert cycle_in(graph) is not None
    del sources["ecr_layers._cli_parser"]
    assert cycle_in(import_graph(sources)) is None


def test_the_command_lines_modules_import_no_cycle() -> None:
    graph = import_graph(cli_modules())
    assert len(graph) >= 8, graph
    assert sum(map(len, graph.values())) >= 8, graph  # the check sees the real edges
    assert cycle_in(graph) is None


def test_exit_codes_and_error_lines_import_no_other_cli_module() -> None:
    # Every command may then use them, and none has to import the entry point.
    assert import_graph(cli_modules())["ecr_layers._cli_output"] == set()


def test_only_the_entry_point_imports_the_commands() -> None:
    graph = import_graph(cli_modules())
    commands = {"_cli_layers", "_cli_images", "_cli_serve", "_demo"}
    importers = {
        name
        for name, targets in graph.items()
        if {target.rsplit(".", 1)[1] for target in targets} & commands
    }
    assert importers == {"ecr_layers._cli"}


# -- the pytest plugin ------------------------------------------------------------------

_LOADED = """
import importlib.metadata, sys
[entry] = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "ecr_layers"]
entry.load()
print(entry.value)
print(" ".join(sorted(m for m in sys.modules if m.startswith("ecr_layers"))))
"""


def test_loading_the_pytest_plugin_imports_no_server_module() -> None:
    # A child process: this one imported LocalECR long ago.  The plugin is loaded the
    # way pytest loads it, through the installed entry point.
    out = subprocess.run(
        [sys.executable, "-c", _LOADED], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    plugin, loaded = out[0], set(out[1].split())
    testing = {
        f"ecr_layers.testing.{p.stem}"
        for p in (PACKAGE / "testing").glob("_*.py")
        if p.stem != "__init__"
    }
    assert {"ecr_layers.testing._server", "ecr_layers.testing._handler"} <= testing
    assert plugin in loaded  # the check looks at a process that did load it
    assert loaded & testing == {plugin}


def test_local_ecr_is_still_there_when_asked_for() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _LOADED + "from ecr_layers.testing import LocalECR\n"
         "print('ecr_layers.testing._server' in sys.modules, LocalECR.__module__)"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split("\n")  # fmt: skip
    assert out[2] == "True ecr_layers.testing._server"


def test_the_testing_package_offers_every_name_from_its_home() -> None:
    from ecr_layers import testing

    homes: dict[str, str] = testing._HOMES
    assert sorted(homes) == testing.__all__
    # What mypy sees (the TYPE_CHECKING imports) is what runs: the same name, same home.
    tree = ast.parse((PACKAGE / "testing" / "__init__.py").read_text())
    typed = {
        alias.name: node.module
        for block in tree.body
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert typed == homes
    for name, home in homes.items():
        module = importlib.import_module(f"ecr_layers.testing.{home}")
        assert getattr(testing, name) is getattr(module, name)
        assert name in dir(testing)
    missing = "no_such_name"  # a plain attribute here would be mypy's error, as it should be
    with pytest.raises(AttributeError, match=missing):
        getattr(testing, missing)
