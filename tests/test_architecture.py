"""Which way imports go in src/notiflow (docs/architecture.md), checked on the import graph.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions. There is no
cycle; nothing imports the composition root (``notiflow.main``) but itself; the foundation
(``kit``, ``models``, ``config``) imports no domain. Domains and ``kit`` say what they need from
a process as Protocols, which the root's runtime satisfies.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# The composition root: it builds processes and is the only code that may import everything.
ROOT = "notiflow.main"
# Below the domains: they import nothing above them.
FOUNDATION = ("notiflow.kit", "notiflow.models", "notiflow.config")


def _modules(src: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in (src / "notiflow").rglob("*.py"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


@cache
def import_graph(src: Path = SRC) -> dict[str, frozenset[str]]:
    """Module -> the notiflow modules it imports (a name imported from a package counts as its
    submodule when there is one)."""
    modules = _modules(src)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, frozenset[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = {
            target
            for name in _imported_names(tree, module, path.name == "__init__.py")
            if name.startswith("notiflow")
            and (target := resolve(name)) is not None
            and target not in (module, "notiflow")
        }
        graph[module] = frozenset(targets)
    return graph


def strongly_connected(graph: dict[str, frozenset[str]]) -> list[set[str]]:
    """The cycles of ``graph``: its strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        # Iterative Tarjan: the graph is small, but recursion depth is not ours to spend.
        work = [(node, iter(sorted(graph[node])))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[current] = min(low[current], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[current])
            if low[current] == index[current]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == current:
                        break
                if len(component) > 1:
                    found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "notiflow"
    (package / "kit").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "kit" / "__init__.py").write_text("")
    (package / "kit" / "a.py").write_text("from notiflow.kit import b\n")
    (package / "kit" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from notiflow.kit.c import C\n"
    )
    (package / "kit" / "c.py").write_text("def f():\n    from . import a\n")
    graph = import_graph(tmp_path)
    assert "notiflow.kit.b" in graph["notiflow.kit.a"]  # a submodule imported from its package
    assert "notiflow.kit.c" in graph["notiflow.kit.b"]  # under TYPE_CHECKING
    assert "notiflow.kit.a" in graph["notiflow.kit.c"]  # relative, inside a function
    assert strongly_connected(graph) == [{"notiflow.kit.a", "notiflow.kit.b", "notiflow.kit.c"}]


def test_there_is_no_import_cycle() -> None:
    cycles = [sorted(cycle) for cycle in strongly_connected(import_graph())]
    assert cycles == [], f"import cycles: {cycles}"


def test_nothing_imports_the_composition_root() -> None:
    graph = import_graph()
    wrong = {
        module: sorted(target for target in targets if target.startswith(ROOT))
        for module, targets in graph.items()
        if not module.startswith(ROOT)
    }
    assert {module: targets for module, targets in wrong.items() if targets} == {}


def test_the_foundation_imports_no_domain() -> None:
    graph = import_graph()
    wrong = {
        module: sorted(target for target in targets if not target.startswith(FOUNDATION))
        for module, targets in graph.items()
        if module.startswith(FOUNDATION)
    }
    assert {module: targets for module, targets in wrong.items() if targets} == {}


def test_the_runtime_is_handed_out_as_protocols() -> None:
    """Jobs, services and routes are typed against the Protocols their domain declares, never
    against the runtime: no module outside the root names it."""
    named: list[str] = []
    for module, path in _modules(SRC).items():
        if module.startswith(ROOT):
            continue
        tree = ast.parse(path.read_text(), str(path))
        if any(isinstance(node, ast.Name) and node.id == "Runtime" for node in ast.walk(tree)):
            named.append(module)
    assert named == []


def test_only_the_unit_of_work_commits() -> None:
    """Services flush and the edges open a unit of work: a hand-written commit elsewhere would
    skip (or drop) the after-commit effects."""
    commits: list[str] = []
    for path in sorted((SRC / "notiflow").rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative in ("notiflow/kit/uow.py", "notiflow/kit/after_commit.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else None
            if isinstance(function, ast.Name):
                name = function.id
            if name in ("commit", "commit_and_flush_effects"):
                commits.append(f"{relative}:{node.lineno}")
    # Alembic's migration runner commits its own connection.
    assert [place for place in commits if not place.startswith("notiflow/migrations/")] == []


# Tenant scoping goes through kit/tenant_scope.py (in_tenant, find_in_tenant, get_in_tenant).
# A comparison of a tenant by hand is allowed only here, each with its reason; the list may only
# shrink.
TENANT_SCOPE_HELPER = "notiflow/kit/tenant_scope.py"
KNOWN_HAND_WRITTEN_TENANT_CHECKS = {
    # A channel name's tenant against the token's (Pusher channel authorization): no row is read.
    "notiflow/realtime/authorization.py",
}


def _is_tenant_column(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "tenant_id"


def _is_tenant_row_id(node: ast.expr) -> bool:
    """``Tenant.id``: a join to the tenant's own row (``Tenant.id == Membership.tenant_id``)
    follows a foreign key; it narrows nothing to a tenant."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "id"
        and isinstance(node.value, ast.Name)
        and node.value.id == "Tenant"
    )


def hand_written_tenant_checks(tree: ast.AST) -> list[int]:
    """Lines comparing a ``tenant_id`` with ``==`` / ``!=`` (or ``filter_by(tenant_id=...)``)."""
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operator, left, right in zip(node.ops, operands, operands[1:], strict=False):
                if (
                    isinstance(operator, ast.Eq | ast.NotEq)
                    and (_is_tenant_column(left) or _is_tenant_column(right))
                    and not (_is_tenant_row_id(left) or _is_tenant_row_id(right))
                ):
                    lines.append(node.lineno)
        elif isinstance(node, ast.Call) and any(
            keyword.arg == "tenant_id" for keyword in node.keywords
        ):
            function = node.func
            if isinstance(function, ast.Attribute) and function.attr == "filter_by":
                lines.append(node.lineno)
    return sorted(lines)


def test_the_tenant_check_scan_sees_every_kind_of_comparison() -> None:
    source = (
        "select(Workspace).where(Workspace.tenant_id == tenant_id)\n"
        "if workspace is None or workspace.tenant_id != auth.tenant_id: pass\n"
        "select(Post).filter_by(tenant_id=tenant_id)\n"
        "(Membership.user_id == user_id) & (Membership.tenant_id == Token.tenant_id)\n"
        "select(Membership).join(Tenant, Tenant.id == Membership.tenant_id)\n"
        "select(Workspace).where(in_tenant(Workspace, tenant_id))\n"
        "Workspace(tenant_id=tenant_id)\n"
    )
    assert hand_written_tenant_checks(ast.parse(source)) == [1, 2, 3, 4]


def test_tenant_data_is_scoped_through_the_one_helper() -> None:
    """No module filters or checks a tenant by hand: it calls kit/tenant_scope.py, so another
    tenant's row is everywhere answered like a missing one."""
    found: dict[str, list[int]] = {}
    for path in sorted((SRC / "notiflow").rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative == TENANT_SCOPE_HELPER or relative.startswith("notiflow/migrations/"):
            continue
        if lines := hand_written_tenant_checks(ast.parse(path.read_text(), str(path))):
            found[relative] = lines
    outside = {
        place: lines
        for place, lines in found.items()
        if place not in KNOWN_HAND_WRITTEN_TENANT_CHECKS
    }
    assert outside == {}, f"use kit/tenant_scope.py's in_tenant / get_in_tenant: {outside}"
    stale = sorted(KNOWN_HAND_WRITTEN_TENANT_CHECKS - set(found))
    assert stale == [], f"no longer compare a tenant by hand, remove from the list: {stale}"
