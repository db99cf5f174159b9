"""The direction of dependencies between the domain packages of ``src/vmcloud``, read from the
code's own imports (an ``ast`` walk, so an import hidden inside a function counts too).

    platform (config, core, db, audit, site_settings, accounts)
        ← catalog ← compute ← billing
                    compute ← support
        ← ops;  billing ← backup ← ops;  app, cli, web on top of everything

A lower package never imports a higher one. Routers (``<domain>/api.py``) are the front door:
they may call billing's flows (ordering and deleting an instance), which is how the instance
routes reach billing without compute's services knowing it exists."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import SOURCE_TREES, SRC

PLATFORM = {"config", "core", "db", "audit", "site_settings", "accounts", "__init__"}
ALLOWED: dict[str, set[str]] = {
    **{name: set(PLATFORM) for name in PLATFORM},
    "catalog": PLATFORM,
    "compute": PLATFORM | {"catalog"},
    "billing": PLATFORM | {"catalog", "compute"},
    "support": PLATFORM | {"catalog", "compute"},
    "backup": PLATFORM | {"catalog", "compute", "billing"},
    "ops": PLATFORM | {"backup"},  # /metrics reports the backups
}
TOP = {"app", "cli", "web", "__main__"}  # may import anything
# (importing module, imported module) pairs allowed against the direction, with the reason.
EXCEPTIONS = {
    # Every domain's models, gathered for Alembic and the tests' metadata.
    ("db.models", "*"),
    # The front door: instance routes call billing's flows.
    ("compute.api", "billing.flows"),
}


def _package(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported vmcloud module, line, inside a function) for each import in ``path``."""
    tree = SOURCE_TREES[path]
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            nested |= {id(inner) for inner in ast.walk(node) if inner is not node}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "vmcloud":
                names = [alias.name for alias in node.names]
            elif node.module.startswith("vmcloud."):
                base = node.module.removeprefix("vmcloud.")
                names = [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [
                a.name.removeprefix("vmcloud.") for a in node.names if a.name.startswith("vmcloud.")
            ]
        for name in names:
            yield name, node.lineno, id(node) in nested


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(SRC).with_suffix("").parts
        yield ".".join(p for p in parts if p != "__init__") or "__init__", path


def _excepted(module: str, target: str) -> bool:
    return any(
        module == src and (dst == "*" or target == dst or target.startswith(dst + "."))
        for src, dst in EXCEPTIONS
    )


def test_domain_packages_depend_one_way() -> None:
    wrong = []
    for module, path in _modules():
        package = _package(module)
        if package in TOP:
            continue
        allowed = ALLOWED[package] | {package}
        for target, line, _ in _imports(path):
            if _package(target) not in allowed and not _excepted(module, target):
                wrong.append(f"{path.relative_to(SRC)}:{line} imports vmcloud.{target}")
    assert wrong == [], "\n".join(wrong)


def test_no_vmcloud_import_inside_a_function() -> None:
    # An import tucked into a function is how a cycle hides; src/ has none.
    hidden = [
        f"{path.relative_to(SRC)}:{line} imports vmcloud.{target}"
        for _, path in _modules()
        for target, line, nested in _imports(path)
        if nested
    ]
    assert hidden == [], "\n".join(hidden)


def test_every_package_has_a_rule() -> None:
    packages = {_package(module) for module, _ in _modules()}
    assert packages - set(ALLOWED) - TOP == set()


def test_every_task_named_in_a_defer_is_registered() -> None:
    # Services queue their own domain's jobs by name (so they need not import the task modules
    # that call them back); a misspelt name would only fail when the job is queued.
    from vmcloud.core import jobs

    named = {
        (path.relative_to(SRC), node.args[1].value)
        for _, path in _modules()
        for node in ast.walk(SOURCE_TREES[path])
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "defer"
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
    }
    names = {name for _, name in named}
    # compute.service picks its task names from a table (``_queue``).
    names |= {"compute.provision_instance", "compute.instance_action", "compute.destroy_instance"}
    assert len(named) >= 5
    jobs.task_named("compute.reconcile")  # imports every task module
    missing = [name for name in sorted(names) if name not in jobs.app.tasks]
    assert missing == []
