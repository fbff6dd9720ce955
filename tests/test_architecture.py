"""The layout is the architecture (docs/architecture.md): packages by layer, each importing only its own
package and the layers below; no import circle but Textual's app ↔ screens; no module over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "altui"

# Bottom first. A module may import its own package and any package of a lower layer; packages on one
# layer do not import each other. `al` imports nothing of altui (the science stands alone).
LAYERS = (
    ("al", "files"),
    ("spec", "store"),
    ("results", "execution"),
    ("speed",),
    ("tui",),
    ("cli",),
    ("__main__",),
)
ALONE = {"al"}  # may import nothing of altui at all
CIRCLE_ALLOWED = ("altui.tui.app", "altui.tui.screens.")  # Textual's idiom: the app pushes screens that call it
MAX_LINES = 500
MAX_TOP_MODULES = 6


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, root: Path) -> set[str]:
    """Every altui module `path` imports: at the top, inside functions and under TYPE_CHECKING alike."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from altui.x import y` may name a module y: count it when y is one
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] == root.name}


def graph(root: Path) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: {m for m in imported(p, root) if m in modules and m != name} for name, p in modules.items()}


def layer_of(module: str, root: Path) -> tuple[str, int] | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself
    top = parts[1]
    for rank, layer in enumerate(LAYERS):
        if top in layer:
            return top, rank
    return top, -1


def upward_imports(root: Path) -> list[str]:
    problems = []
    for module, deps in sorted(graph(root).items()):
        mine = layer_of(module, root)
        if mine is None:
            continue
        if mine[1] < 0:
            problems.append(f"{module}: package {mine[0]!r} is on no layer (add it to LAYERS and the docs)")
            continue
        for dep in sorted(deps):
            theirs = layer_of(dep, root)
            if theirs is None or theirs[0] == mine[0]:
                continue
            if mine[0] in ALONE or theirs[1] >= mine[1]:
                problems.append(f"{module} imports {dep}: {mine[0]} (layer {mine[1]}) may not import "
                                f"{theirs[0]} (layer {theirs[1]})")
    return problems


def circles(root: Path) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), less Textual's app ↔ screens."""
    edges = graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [c for c in found if not all(m.startswith(CIRCLE_ALLOWED) for m in c)]


def long_modules(root: Path) -> list[str]:
    return [f"{p.relative_to(root.parent)}: {n} lines" for p in sorted(root.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES]


def undocumented_packages(root: Path) -> list[str]:
    return [str(p.relative_to(root.parent)) for p in sorted(root.rglob("__init__.py"))
            if not ast.get_docstring(ast.parse(p.read_text()))]


def test_no_module_imports_upward():
    assert upward_imports(PACKAGE) == []


def test_no_import_circle():
    assert circles(PACKAGE) == []


def test_no_module_over_500_lines():
    assert long_modules(PACKAGE) == []


def test_the_top_level_holds_packages_and_at_most_six_modules():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_TOP_MODULES, modules
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == {top for layer in LAYERS for top in layer} - {m.removesuffix(".py") for m in modules}


def test_every_package_says_what_it_holds():
    assert undocumented_packages(PACKAGE) == []


# The checks themselves, on a small tree that breaks each rule: a check that cannot fail checks nothing.

def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "altui" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "altui"


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    return write(tmp_path, {
        "__init__.py": '"""x"""\n',
        "files.py": "",
        "al/__init__.py": "",  # no docstring
        "al/loop.py": "import altui.files\n",  # al stands alone
        "store/__init__.py": '"""x"""\nimport altui.spec\n',  # same layer
        "spec/__init__.py": '"""x"""\n',
        "spec/parse.py": "from . import keys\n",
        "spec/keys.py": "def f():\n    from altui.spec import parse\n",  # a circle through a function
        "execution/__init__.py": '"""x"""\n',
        "execution/runner.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from altui.tui.app import A\n",
        "tui/__init__.py": '"""x"""\n',
        "tui/app.py": "from altui.tui.screens.main import M\n" + "x = 1\n" * 501,
        "tui/screens/__init__.py": '"""x"""\n',
        "tui/screens/main.py": "from altui.tui.app import A\n",  # allowed
    })


def test_the_rules_catch_what_they_forbid(broken: Path):
    assert upward_imports(broken) == [
        "altui.al.loop imports altui.files: al (layer 0) may not import files (layer 0)",
        "altui.execution.runner imports altui.tui.app: execution (layer 2) may not import tui (layer 4)",
        "altui.store imports altui.spec: store (layer 1) may not import spec (layer 1)",
    ]
    assert circles(broken) == [["altui.spec.keys", "altui.spec.parse"]]
    assert long_modules(broken) == ["altui/tui/app.py: 502 lines"]
    assert undocumented_packages(broken) == ["altui/al/__init__.py"]
