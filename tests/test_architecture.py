"""Which way imports go in src/notiflow (docs/architecture.md), checked on the import graph.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions. The lists of
known exceptions below are what is left of the jobs' dependency on the whole ``Runtime``; they
may only shrink: a module that no longer needs its exception must leave the list (the tests say
so), and no new module may join it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# The edges: they build processes and may import everything.
EDGES = frozenset(
    {
        "notiflow.app",
        "notiflow.cli",
        "notiflow.demo",
        "notiflow.jobs",
        "notiflow.loadtest",
        "notiflow.runtime",
        "notiflow.schedule",
        "notiflow.kit.deps",  # FastAPI dependencies of the routes: the HTTP edge's
    }
)
# Below the domains: they import nothing above them.
FOUNDATION = ("notiflow.kit", "notiflow.models", "notiflow.config")

# Jobs and services typed against the whole Runtime (under TYPE_CHECKING, or to reach its parts),
# and the one cycle this makes through the job registry.
KNOWN_RUNTIME_USERS = frozenset(
    {
        "notiflow.analytics.jobs",
        "notiflow.analytics.service",
        "notiflow.content.jobs",
        "notiflow.content.publishing",
        "notiflow.delivery.jobs",
        "notiflow.inbox.jobs",
        "notiflow.inbox.service",
        "notiflow.inbox.sync",
        "notiflow.kit.queue",
        "notiflow.notifications.jobs",
        "notiflow.privacy.jobs",
        "notiflow.realtime.api",
        "notiflow.social.jobs",
        "notiflow.social.service",
    }
)
KNOWN_EDGE_IMPORTS = {
    "notiflow.tenancy.workspaces": {"notiflow.schedule"},  # a timezone change moves the runs
}
# The runtime's users, less the one route, close a loop through the runtime and the job registry.
KNOWN_CYCLE = (KNOWN_RUNTIME_USERS - {"notiflow.realtime.api"}) | {
    "notiflow.jobs",
    "notiflow.runtime",
    "notiflow.privacy.service",
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in (SRC / "notiflow").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
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
def import_graph() -> dict[str, frozenset[str]]:
    """Module -> the notiflow modules it imports (a name imported from a package counts as its
    submodule when there is one)."""
    modules = _modules()

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


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    # At module level, under TYPE_CHECKING and inside a function.
    assert "notiflow.kit.after_commit" in graph["notiflow.kit.uow"]
    assert "notiflow.runtime" in graph["notiflow.kit.queue"]  # TYPE_CHECKING
    assert "notiflow.runtime" in graph["notiflow.cli"]  # inside _prepare()
    assert strongly_connected({"a": frozenset({"b"}), "b": frozenset({"a"}), "c": frozenset()}) == [
        {"a", "b"}
    ]


def test_no_import_cycle_but_the_known_one_and_it_only_shrinks() -> None:
    cycles = strongly_connected(import_graph())
    outside = [sorted(cycle - KNOWN_CYCLE) for cycle in cycles if not cycle <= KNOWN_CYCLE]
    assert outside == [], f"a new import cycle: {outside}"
    in_cycle: set[str] = set().union(*cycles)
    left = KNOWN_CYCLE - in_cycle
    assert left == set(), f"no longer in a cycle, remove from KNOWN_CYCLE: {sorted(left)}"


def test_the_foundation_imports_no_domain_and_no_edge() -> None:
    graph = import_graph()
    wrong = {
        module: sorted(
            target
            for target in targets
            if not target.startswith(FOUNDATION)
            and not (module in KNOWN_RUNTIME_USERS and target == "notiflow.runtime")
        )
        for module, targets in graph.items()
        if module.startswith(FOUNDATION) and module not in EDGES
    }
    assert {module: targets for module, targets in wrong.items() if targets} == {}


def test_domains_import_no_edge_but_the_known_ones() -> None:
    graph = import_graph()
    wrong: dict[str, list[str]] = {}
    for module, targets in graph.items():
        if module in EDGES or module.startswith(FOUNDATION):
            continue
        # Routes take their session and caller from the HTTP edge's dependencies.
        allowed = set(KNOWN_EDGE_IMPORTS.get(module, set())) | {"notiflow.kit.deps"}
        if module in KNOWN_RUNTIME_USERS:
            allowed.add("notiflow.runtime")
        if edges := {target for target in targets if target in EDGES} - allowed:
            wrong[module] = sorted(edges)
    assert wrong == {}, f"domain modules importing an edge: {wrong}"


def test_the_known_exceptions_are_still_needed() -> None:
    graph = import_graph()
    stale = sorted(
        module for module in KNOWN_RUNTIME_USERS if "notiflow.runtime" not in graph[module]
    ) + sorted(
        module for module, targets in KNOWN_EDGE_IMPORTS.items() if not targets <= graph[module]
    )
    assert stale == [], f"no longer need their exception, remove them from the lists: {stale}"


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
