"""The first-party import graph, read statically with ``ast``: layers point
down, no module-level cycle, services never import an api, and an import
inside a function says why it is there.

Every ``.py`` file under the apps is read, migrations included: they ship and
run on every deploy, so a migration importing a higher app would tie that app
into a lower app's schema history. Both module-level and function-level
imports count for the layers; only module-level ones (those that run when the
module loads, ``TYPE_CHECKING`` blocks left out) can form an import cycle.
Importing ``a.b.c`` also loads the packages ``a`` and ``a.b``; those implicit
edges are not drawn (every submodule would otherwise be in a cycle with its
package), but what a package's ``__init__`` itself imports and re-exports is.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Imports point down: a module may import its own app and any app of a lower
# rank. Apps of one rank (vault, gateways, ledger) do not import each other.
LAYERS: dict[str, int] = {
    "core": 0,
    "vault": 1,
    "gateways": 1,
    "ledger": 1,
    "payments": 2,
    "config": 3,
    "bench": 4,
}

# (importer module, imported module) -> why this edge breaks the layers.
# Sideways imports between vault, gateways and ledger: none today. Gateways take
# card data as plain values in their request dataclasses (payments opens the
# vault and hands it over), and the ledger takes settled payments and gateway
# records as rows passed in from payments.
ALLOWED: dict[tuple[str, str], str] = {}

# An import inside a function must carry one of these on its line or in the
# comment block right above it, with the reason after the colon.
MARKERS = ("# cycle:", "# deferred:")


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    target: str
    path: str  # relative to the root, with forward slashes
    line: int
    in_function: bool
    type_checking: bool
    explained: bool

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} -> {self.target}"


# --- the graph -----------------------------------------------------------------


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_files(root: Path, apps: Iterable[str]) -> dict[str, Path]:
    return {
        module_name(root, path): path
        for app in apps
        for path in sorted((root / app).rglob("*.py"))
    }


def _resolve(name: str, modules: set[str]) -> str:
    """The module that ``name`` (a module, or a name inside one) lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def _targets(node: ast.Import | ast.ImportFrom, package: str, modules: set[str]):
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    if node.level:
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join([*base, node.module] if node.module else base)
    else:
        origin = node.module or ""
    for alias in node.names:
        submodule = f"{origin}.{alias.name}"
        yield submodule if submodule in modules else origin


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, in_function: bool = False, type_checking: bool = False):
    """(import node, inside a function?, under ``if TYPE_CHECKING``?)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function, type_checking
        yield from _walk(
            child,
            in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef),
            type_checking
            or (isinstance(child, ast.If) and _is_type_checking(child.test)),
        )


def _explained(lines: list[str], node: ast.stmt, import_lines: set[int]) -> bool:
    """A marker on the statement's lines, or in the comments and imports
    directly above it (one comment may cover a block of imports)."""
    for n in range(node.lineno, (node.end_lineno or node.lineno) + 1):
        if any(m in lines[n - 1] for m in MARKERS):
            return True
    n = node.lineno - 1
    while n >= 1:
        text = lines[n - 1].strip()
        if any(m in text for m in MARKERS):
            return True
        if not (text.startswith("#") or n in import_lines):
            return False
        n -= 1
    return False


def imports(root: Path, apps: Iterable[str] = tuple(LAYERS)) -> list[Import]:
    """Every first-party import in the apps under ``root``."""
    apps = tuple(apps)
    files = source_files(root, apps)
    modules = set(files)
    found: list[Import] = []
    for importer, path in files.items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text, filename=str(path))
        package = (
            importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        )
        nodes = list(_walk(tree))
        import_lines = {
            n
            for node, _, _ in nodes
            for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)
        }
        for node, in_function, type_checking in nodes:
            for name in _targets(node, package, modules):
                if name.split(".")[0] not in apps:
                    continue
                target = _resolve(name, modules) or name
                found.append(
                    Import(
                        importer=importer,
                        target=target,
                        path=path.relative_to(root).as_posix(),
                        line=node.lineno,
                        in_function=in_function,
                        type_checking=type_checking,
                        explained=_explained(lines, node, import_lines),
                    )
                )
    return list(dict.fromkeys(found))  # one per target, however many names


# --- the rules -----------------------------------------------------------------


def layer_violations(
    found: Iterable[Import], allowed: dict[tuple[str, str], str] = ALLOWED
) -> list[str]:
    out = []
    for imp in found:
        src, dst = imp.importer.split(".")[0], imp.target.split(".")[0]
        if src == dst or (imp.importer, imp.target) in allowed:
            continue
        if LAYERS[dst] > LAYERS[src]:
            out.append(f"{imp} (up: {src} may not import {dst})")
        elif LAYERS[dst] == LAYERS[src]:
            out.append(f"{imp} (sideways: {src} may not import {dst})")
    return out


def cycles(found: Iterable[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over
    the module-level edges."""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in found:
        if not imp.in_function and not imp.type_checking:
            graph[imp.importer].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _is(kind: str, module: str) -> bool:
    return any(part.startswith(kind) for part in module.split(".")[1:])


def services_importing_api(found: Iterable[Import]) -> list[str]:
    return [
        str(imp)
        for imp in found
        if _is("services", imp.importer) and _is("api", imp.target)
    ]


def unexplained_function_imports(found: Iterable[Import]) -> list[str]:
    return [str(imp) for imp in found if imp.in_function and not imp.explained]


# --- the repository ------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    found = imports(ROOT)
    # Not vacuous: the walk sees the apps and the edges the layers rely on.
    edges = {(i.importer, i.target) for i in found}
    assert len({i.importer for i in found}) > 60
    assert ("payments.services.reconciliation", "ledger.reconcile") in edges
    assert ("vault.cards", "core.pan") in edges
    assert ("bench.urls", "config.urls") in edges
    return found


def test_imports_point_down_the_layers(graph):
    assert layer_violations(graph) == []


def test_every_allowed_exception_is_still_needed(graph):
    edges = {(i.importer, i.target) for i in graph}
    assert [pair for pair in ALLOWED if pair not in edges] == []


def test_no_import_cycle_between_modules(graph):
    assert cycles(graph) == []


def test_services_never_import_an_api_module(graph):
    assert services_importing_api(graph) == []


def test_function_level_imports_say_why(graph):
    assert unexplained_function_imports(graph) == []


# --- the checker itself, on a synthetic tree -------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for app in LAYERS:
        (root / app).mkdir(exist_ok=True)
        (root / app / "__init__.py").touch()
    return root


def test_checker_reports_the_ledger_importing_payments(tmp_path):
    root = _tree(
        tmp_path,
        {
            "payments/selectors.py": "X = 1\n",
            "ledger/reconcile.py": "from payments import selectors\n",
            "ledger/services.py": (
                "def f():\n    from payments.selectors import X  # cycle: no\n"
            ),
        },
    )
    assert layer_violations(imports(root)) == [
        "ledger/reconcile.py:1: ledger.reconcile -> payments.selectors "
        "(up: ledger may not import payments)",
        "ledger/services.py:2: ledger.services -> payments.selectors "
        "(up: ledger may not import payments)",
    ]


def test_checker_reports_sideways_imports_unless_allowed(tmp_path):
    root = _tree(tmp_path, {"gateways/cards.py": "import vault.cards\n"})
    (root / "vault" / "cards.py").write_text("")
    found = imports(root)
    assert layer_violations(found) == [
        "gateways/cards.py:1: gateways.cards -> vault.cards "
        "(sideways: gateways may not import vault)"
    ]
    allowed = {("gateways.cards", "vault.cards"): "a reason"}
    assert layer_violations(found, allowed) == []


def test_checker_finds_a_cycle_through_a_package_reexport(tmp_path):
    root = _tree(
        tmp_path,
        {
            "payments/hooks/__init__.py": "from .send import post\n",
            "payments/hooks/send.py": (
                "from payments.hooks import helper\n\ndef post():\n    pass\n"
            ),
            "payments/hooks/helper.py": "from payments.hooks import post\n",
            "payments/late.py": "def f():\n    import payments.hooks\n",
        },
    )
    assert cycles(imports(root)) == [
        ["payments.hooks", "payments.hooks.helper", "payments.hooks.send"]
    ]


def test_checker_reports_a_service_importing_an_api(tmp_path):
    root = _tree(
        tmp_path,
        {
            "payments/api/views.py": "X = 1\n",
            "payments/services/intake.py": "from ..api.views import X\n",
            "payments/api/urls.py": "from payments.services import intake\n",
        },
    )
    assert services_importing_api(imports(root)) == [
        "payments/services/intake.py:1: payments.services.intake -> payments.api.views"
    ]


def test_checker_wants_a_reason_for_a_function_level_import(tmp_path):
    root = _tree(
        tmp_path,
        {
            "core/ids.py": "",
            "core/money.py": "",
            "core/errors.py": (
                "def a():\n"
                "    from core import ids\n"
                "\n"
                "def b():\n"
                "    # deferred: loads after setup\n"
                "    from core import ids\n"
                "    from core import money\n"
                "\n"
                "def c():\n"
                "    import core.money  # cycle: money imports errors\n"
                "\n"
                "def d():\n"
                "    import json\n"
            ),
        },
    )
    assert unexplained_function_imports(imports(root)) == [
        "core/errors.py:2: core.errors -> core.ids"
    ]
