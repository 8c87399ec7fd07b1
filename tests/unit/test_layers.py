"""The dependency rule: channel → nlu → handlers → storage, kept true by reading the imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "nlu": {"bot", "handlers", "storage"},
    "storage": {"bot", "handlers", "nlu", "aiogram", "wechatpy", "fastapi"},
    "handlers": {"bot", "aiogram", "wechatpy", "fastapi", "starlette", "uvicorn"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imports_of(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
        if imports_of(path) & FORBIDDEN[package]
    }
    assert offenders == {}


# handlers/ is grouped by workflow; each workflow imports only those below it, and the shared core
# (the modules at the top of handlers/) imports none, but intake, the door every channel calls.
WORKFLOWS_BELOW = {
    "registry": set(),
    "cases": {"registry"},
    "council": {"registry", "cases"},
    "figures": {"registry", "cases"},
    "watch": {"registry", "cases", "figures"},
}
# The one import that runs up, on purpose: as the registry is loaded, a post that left it returns
# its open cases to the front desk.
RUNS_UP = {("handlers/registry/loader.py", "cases")}


def handlers_imported(path: Path) -> set[str]:
    """Every handlers module the file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "handlers"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "handlers":
                found |= {f"handlers.{alias.name}" for alias in node.names}
            elif node.module.startswith("handlers."):
                found.add(node.module)
    return found


def workflow_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WORKFLOWS_BELOW else None


def test_the_case_desk_never_imports_the_council() -> None:
    """The council opens execution cases and hears of their resolution through the desk's hook."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in handlers_imported(path) if workflow_of(m) == "council")
        for path in (ROOT / "handlers" / "cases").rglob("*.py")
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_each_workflow_imports_only_the_workflows_below_it() -> None:
    offenders = {}
    for path in (ROOT / "handlers").rglob("*.py"):
        relative = path.relative_to(ROOT)
        own = workflow_of(".".join(relative.with_suffix("").parts))
        if own is None and relative.name == "intake.py":
            continue
        allowed = {own} | WORKFLOWS_BELOW[own] if own else set()
        above = {w for m in handlers_imported(path) if (w := workflow_of(m)) and w not in allowed}
        above -= {w for file, w in RUNS_UP if file == str(relative)}
        if above:
            offenders[str(relative)] = sorted(above)
    assert offenders == {}
    assert set(WORKFLOWS_BELOW) == {p.name for p in (ROOT / "handlers").iterdir() if (p / "__init__.py").exists()} - {
        "replies"}
