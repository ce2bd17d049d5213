"""The public API is what ``__all__`` lists (design.md 3.9): every listed name exists, is
importable from the package, and nothing is listed twice."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ["capabilities", "runtime"]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_exist_and_import(package: str) -> None:
    module = importlib.import_module(package)
    names = module.__all__
    assert names, f"{package}.__all__ is empty"
    assert len(set(names)) == len(names), f"{package}.__all__ lists a name twice"
    for name in names:
        assert hasattr(module, name), f"{package}.__all__ lists {name!r}, which does not exist"
        namespace: dict[str, object] = {}
        exec(f"from {package} import {name}", namespace)
        assert namespace[name] is getattr(module, name)


@pytest.mark.parametrize("package", PACKAGES)
def test_star_import_gives_exactly_all(package: str) -> None:
    module = importlib.import_module(package)
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)
    namespace.pop("__builtins__", None)
    assert sorted(namespace) == sorted(module.__all__)


def test_capabilities_modules_list_only_what_they_define() -> None:
    package = importlib.import_module("capabilities")
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"capabilities.{info.name}")
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"capabilities.{info.name}.__all__ lists {name!r}"


def test_public_names_of_the_foundation() -> None:
    import capabilities
    import runtime

    assert {"capability", "Registry", "CapabilityContext", "ProjectError", "Problem"} <= set(
        capabilities.__all__
    )
    assert {"load_project", "Project", "Character", "ProjectConfig"} <= set(runtime.__all__)
