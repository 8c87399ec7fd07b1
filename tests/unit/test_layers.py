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
