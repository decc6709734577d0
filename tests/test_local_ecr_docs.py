"""docs/testing.md says what LocalECR does: its operations, knobs, fault names and limits."""

from __future__ import annotations

import inspect
import pathlib
import re
import typing
from collections.abc import Callable

from ecr_layers.testing import Faults, LocalECR, Stats
from ecr_layers.testing._faults import FaultName
from ecr_layers.testing._handler import MAX_API_BODY
from ecr_layers.testing._operations import OPERATIONS

PAGE = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()


def section(title: str) -> str:
    """Return the text under the ``## title`` heading, up to the next one."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", PAGE, re.DOTALL | re.MULTILINE)
    assert match is not None, title
    return match[1]


def documented_signature(name: str, function: Callable[..., object]) -> str:
    """Render a method as the docs write it: ``name(a, b=1, *, c=)``.

    Positional defaults are shown; keyword-only arguments by name, their defaults
    being the table's business.
    """
    parts: list[str] = []
    for parameter in list(inspect.signature(function).parameters.values())[1:]:  # not self
        if parameter.kind is parameter.KEYWORD_ONLY:
            if "*" not in parts:
                parts.append("*")
            parts.append(f"{parameter.name}=")
        elif parameter.default is parameter.empty:
            parts.append(parameter.name)
        else:
            parts.append(f"{parameter.name}={parameter.default!r}")
    return f"{name}({', '.join(parts)})"


def documented_methods(cls: type) -> dict[str, Callable[..., object]]:
    # The methods with a docstring are the public ones; those without are the
    # server's own (take_failure(), latency(), add()...).
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(value) and value.__doc__
    }


def written_calls(text: str) -> dict[str, set[str]]:
    """Every ``name(...)`` written in a code span of *text*, by name."""
    calls: dict[str, set[str]] = {}
    for match in re.finditer(r"`(?:ecr\.stats\.)?((\w+)\([^`\n]*\))`", text):
        calls.setdefault(match[2], set()).add(match[1])
    return calls


def test_the_served_operations_are_the_table() -> None:
    listed = re.findall(r"^- `(\w+)`$", section("Operations served"), re.MULTILINE)
    assert listed
    assert sorted(listed) == sorted(OPERATIONS)


def test_every_knob_is_documented_with_its_signature() -> None:
    written = written_calls(section("Fault injection"))
    methods = documented_methods(Faults)
    assert {"fail_next", "add_latency", "expire_next_urls", "clear"} <= set(methods)
    for name, method in methods.items():
        assert written.get(name) == {documented_signature(name, method)}, name
    for attribute in re.findall(r"^\| `(\w+) = ", PAGE, re.MULTILINE):
        assert hasattr(Faults(), attribute), attribute


def test_every_counter_is_documented_with_its_signature() -> None:
    written = written_calls(section("Fault injection"))
    methods = documented_methods(Stats)
    assert {"count", "blob_count", "faults", "reset"} <= set(methods)
    for name, method in methods.items():
        assert written.get(name) == {documented_signature(name, method)}, name
    assert "`ecr.stats.records`" in PAGE
    assert isinstance(inspect.getattr_static(Stats, "records"), property)


def test_the_fault_names_are_the_ones_recorded() -> None:
    rows = re.findall(r"^\|.*\| (.*) \|$", section("Fault injection"), re.MULTILINE)
    recorded_as = {name for row in rows for name in re.findall(r"`(\w+)`", row)}
    recorded_as.discard("None")
    assert recorded_as == set(typing.get_args(FaultName))


def test_the_body_limit_is_the_documented_one() -> None:
    assert MAX_API_BODY % 2**20 == 0
    assert f"over {MAX_API_BODY // 2**20} MiB are refused" in PAGE


def test_the_seed_helper_is_documented_as_it_behaves() -> None:
    assert "`seed_demo()`" in PAGE
    assert inspect.signature(LocalECR.seed_demo).parameters.keys() == {"self"}
    assert "`demo/app:v1`" in PAGE
