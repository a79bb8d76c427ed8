"""envs → vision → agents → darla: a lower layer never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ORDER = ["envs", "vision", "agents", "darla"]
FORBIDDEN_THIRD_PARTY = {"envs": {"torch", "stable_baselines3"}, "vision": {"stable_baselines3"}}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module.split(".")[0])
    return mods


@pytest.mark.parametrize("pkg", ORDER)
def test_no_upward_imports(pkg):
    higher = set(ORDER[ORDER.index(pkg) + 1 :]) | FORBIDDEN_THIRD_PARTY.get(pkg, set())
    files = list((REPO / pkg).rglob("*.py"))
    assert files
    bad = {str(f.relative_to(REPO)): sorted(imported_modules(f) & higher) for f in files}
    assert not {k: v for k, v in bad.items() if v}
