"""What imports what: the command line's modules form no cycle."""

from __future__ import annotations

import ast
import graphlib
import pathlib

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
