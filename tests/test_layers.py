"""The package map of docs/design.md, enforced: every module of src/mdgan_dist imports only from
the layers below its own, and the algorithms do not borrow from each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "mdgan_dist"

# Lowest first: a module may import from its own layer and the layers before it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "seeding", "augment")),
    ("config", ("config", "compose", "fault_plan", "privacy", "trajectory", "validation")),
    ("data and models", ("data", "models")),
    ("transport", ("distributed",)),
    ("run files", ("job", "checkpoint", "run_directory", "run_logging", "resources", "privacy_ledger")),
    ("metrics", ("metrics",)),
    ("algorithms", ("algorithms",)),
    ("experiments", ("experiments",)),
    ("entry point", ("train",)),
]
ALGORITHM_PACKAGES = ("algorithms.mdgan", "algorithms.flgan", "algorithms.standalone")
SHARED_BY_ALL = "algorithms.registry"  # the one shared module that names every algorithm


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mdgan_dist."):
            names.add(node.module.removeprefix("mdgan_dist."))
        elif isinstance(node, ast.Import):
            names.update(a.name.removeprefix("mdgan_dist.") for a in node.names if a.name.startswith("mdgan_dist."))
    return names


def layer(module: str) -> int:
    top = module.split(".")[0]
    for index, (_, tops) in enumerate(LAYERS):
        if top in tops:
            return index
    raise AssertionError(f"{module} is in no layer of the package map: add it to LAYERS and docs/design.md")


def algorithm_package(module: str) -> str | None:
    return next((package for package in ALGORITHM_PACKAGES if module.startswith(package)), None)


MODULES = sorted(SOURCE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path) or "mdgan_dist")
def test_a_module_imports_only_from_below(path: Path) -> None:
    module = module_name(path)
    if not module:  # the package's own __init__
        return
    for target in imported(path):
        assert layer(target) <= layer(module), f"{module} (layer {LAYERS[layer(module)][0]}) imports {target}"
        own, theirs = algorithm_package(module), algorithm_package(target)
        if theirs is not None and own != theirs:
            assert module in (SHARED_BY_ALL, "train"), f"{module} borrows from the algorithm {theirs}"
        if module.startswith("experiments.") and target.startswith("algorithms"):
            assert target == SHARED_BY_ALL, f"{module} reaches into {target}: the registry has names and checks"


def test_the_map_sees_the_rules_it_enforces() -> None:
    """The checks above would pass on nothing: they must see the imports they judge."""
    assert "algorithms.registry" in imported(SOURCE / "train.py")
    assert {"algorithms.mdgan.server", "algorithms.flgan.server"} <= imported(SOURCE / "algorithms" / "registry.py")
    assert layer("metrics.evaluator") < layer("algorithms.steps") < layer("train")
