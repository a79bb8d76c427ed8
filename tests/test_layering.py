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


# --- structure inside the layers: the module graph, imports inside functions included ---------
PACKAGES = ORDER
#: Besides the layers: code that imports them but is no test (tests may reach private helpers).
CLIENTS = ["benchmarks"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(roots: list[str]) -> dict[str, Path]:
    return {_module_name(p): p for root in roots for p in sorted((REPO / root).rglob("*.py"))}


def _import_source(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The module a ``from … import`` reads from; a relative one resolved against this module's package."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _from_imports(name: str, path: Path) -> list[tuple[str, str, int]]:
    """(module imported from, imported name, line) for every ``from x import y``, anywhere in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            out += [(_import_source(name, path, node), a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names]
    return out


def import_graph() -> dict[str, set[str]]:
    """Module → project modules it imports. ``from pkg import sub`` is an edge to the submodule."""
    mods = _modules(PACKAGES)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for src, name, _ in _from_imports(m, path):
            target = f"{src}.{name}" if f"{src}.{name}" in mods else src
            if target in mods and target != m:
                graph[m].add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        cycles.append(sorted(comp))
    return cycles


def test_import_cycle_detector_sees_a_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    """No module imports (even lazily, inside a function) a module that imports it back."""
    assert import_cycles(import_graph()) == []


def test_no_private_imports_across_modules():
    """``from x import _name`` across files: a private name is the business of its own module."""
    project = {m.split(".")[0] for m in _modules(PACKAGES)}
    bad = []
    for m, path in _modules(PACKAGES + CLIENTS).items():
        for src, name, line in _from_imports(m, path):
            if src.split(".")[0] in project and src != m and name.startswith("_") and not name.startswith("__"):
                bad.append(f"{path.relative_to(REPO)}:{line}: from {src} import {name}")
    assert not bad


def _load_time_imports(module: str, mods: dict[str, Path]) -> set[str]:
    """Root names of every module that importing ``module`` loads: its top-level imports, followed
    through project modules (and the packages that hold them); imports inside functions excluded."""
    seen: set[str] = set()
    roots: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in mods]
        tree = ast.parse(mods[m].read_text(encoding="utf-8"))
        for node in tree.body:  # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name in mods:
                    todo.append(name)
                roots.add(name.split(".")[0])
    return roots


@pytest.mark.parametrize("module", ["vision.io", "vision.interrupt", "darla.runs"])
def test_file_utilities_load_no_model_library(module):
    """Writing a manifest or JSON costs no torch: the atomic writers and hashes are standard library."""
    assert not _load_time_imports(module, _modules(PACKAGES)) & {"torch", "stable_baselines3", "sklearn", "matplotlib"}


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attribute accesses on a name; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def private_attribute_uses(name: str, path: Path, mods: dict[str, Path], text: str | None = None) -> list[str]:
    """``m._name`` where ``m`` is another project module (``import a.b as m``, ``from a import b``,
    ``import a.b`` then ``a.b._name``): a private name reached without importing it by name.
    ``text``: the source, when it is not ``path``'s."""
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text)
    aliases: dict[str, str] = {}  # local name → project module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0] for a in node.names})
        elif isinstance(node, ast.ImportFrom):
            src = _import_source(name, path, node)
            aliases.update({a.asname or a.name: f"{src}.{a.name}" for a in node.names if f"{src}.{a.name}" in mods})
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            target = _dotted(node.value)
            if target is None:
                continue
            head, _, rest = target.partition(".")
            module = ".".join(filter(None, [aliases.get(head, ""), rest])) if head in aliases else ""
            if module in mods and module != name:
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {target}.{node.attr}")
    return bad


def test_private_attribute_use_detector():
    mods = {"pkg": Path("pkg/__init__.py"), "pkg.mod": Path("pkg/mod.py"), "pkg.other": Path("pkg/other.py")}
    code = "import pkg.mod\nimport pkg.mod as m\nfrom pkg import mod\npkg.mod._a; m._b; mod._c; m.__doc__; mod.public; self._d\n"
    found = private_attribute_uses("pkg.other", REPO / "pkg" / "other.py", mods, text=code)
    assert [use.rsplit(" ", 1)[1] for use in found] == ["pkg.mod._a", "m._b", "mod._c"]




def test_no_private_attributes_of_other_modules():
    """``module._name`` is a private import by another road: a private name is its own module's business."""
    mods = _modules(PACKAGES)
    found = [b for m, path in _modules(PACKAGES + CLIENTS).items() for b in private_attribute_uses(m, path, mods)]
    assert not found


def _declares_all(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets) for n in tree.body)


@pytest.mark.parametrize("package", sorted(m for m, p in _modules(PACKAGES).items() if p.name == "__init__.py" and _declares_all(p)))
def test_package_imports_stay_inside_its_all(package):
    """A package that declares ``__all__`` is imported by those names (or its submodules) only, so the
    surface it promises is the one code uses; and every name it declares exists."""
    import importlib

    mod = importlib.import_module(package)
    names = mod.__all__
    assert [n for n in names if not hasattr(mod, n)] == []
    mods = _modules(PACKAGES + CLIENTS + ["tests"])
    bad = [f"{path.relative_to(REPO)}:{line}: from {src} import {n}"
           for m, path in mods.items() for src, n, line in _from_imports(m, path)
           if n and src == package and n not in names and f"{package}.{n}" not in mods]
    assert not bad


# --- no block of code written twice ------------------------------------------------------------
#: How many code lines make a duplicated block.
BLOCK = 6


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of the logic in a file: no blank or comment lines, no docstrings,
    no imports, and no def/class headers or decorators, whose repetition an interface requires (every
    model's ``train_step`` has the same signature)."""
    tree = ast.parse(text)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            skip.update(range(node.lineno, node.end_lineno + 1))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            skip.update(range(node.lineno, node.body[0].lineno))
            for d in node.decorator_list:
                skip.update(range(d.lineno, d.end_lineno + 1))
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                skip.update(range(first.lineno, first.end_lineno + 1))
    lines = enumerate(text.splitlines(), 1)
    return [(i, s.strip()) for i, s in lines if i not in skip and s.strip() and not s.strip().startswith("#")]


def duplicated_blocks(files: dict[str, str], n: int = BLOCK) -> list[tuple[str, str]]:
    """Pairs of places ``file:first-last`` whose ``n`` consecutive code lines are the same, letter for
    letter once stripped: the first such window of each pair of files (a longer run is one report)."""
    seen: dict[tuple[str, ...], list[tuple[str, int, int]]] = {}
    pairs: dict[tuple[str, str], tuple[str, str]] = {}
    for name, text in files.items():
        lines = code_lines(text)
        for k in range(len(lines) - n + 1):
            window = tuple(s for _, s in lines[k : k + n])
            here = (name, lines[k][0], lines[k + n - 1][0])
            for other in seen.get(window, []):
                if other[0] == name and other[2] >= here[1]:
                    continue  # a run overlapping itself
                pairs.setdefault((other[0], name), (f"{other[0]}:{other[1]}-{other[2]}", f"{name}:{here[1]}-{here[2]}"))
            seen.setdefault(window, []).append(here)
    return sorted(pairs.values())


def test_duplicated_block_detector():
    body = "".join(f"    x{i} = compute(x{i - 1}, {i})\n" for i in range(1, 8))
    a = '"""Doc."""\nimport os\n\n\ndef f(x0):\n    """Doc."""\n' + body + "    return x7\n"
    b = "def g(x0):\n    # a comment between the lines does not hide the copy\n" + body.replace("x4 =", "# note\n    x4 =") + "    return x7\n"
    c = "def h(x0):\n" + body.replace("compute(x3", "other(x3") + "    return x7\n"
    assert duplicated_blocks({"a.py": a, "b.py": b}) == [("a.py:7-12", "b.py:3-9")]
    assert duplicated_blocks({"a.py": a, "c.py": c}) == []  # one changed line breaks every 6-line window
    same_signature = "def train_step(\n    self,\n    x,\n    step,\n    optimizers,\n    scaler=None,\n):\n    return 1\n"
    assert duplicated_blocks({"m.py": same_signature, "n.py": same_signature.replace("return 1", "return 2")}) == []


def test_no_block_of_code_is_written_twice():
    files = {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in _modules(PACKAGES + CLIENTS).values()}
    assert not duplicated_blocks(files)
