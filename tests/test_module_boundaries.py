"""Modules meet through public names: no module of ``falcon_h1r_lib`` imports or reads another's ``_private`` name.

A helper two modules need is public and documented in the module that owns its concept (or moves there).
"""

from __future__ import annotations

import ast

import pytest

from falcon_h1r_lib.paths import package_dir

PACKAGE = "falcon_h1r_lib"


def _module_of(path) -> tuple[str, bool]:
    """(dotted module name, whether it is a package's ``__init__``) of a file under the package."""
    parts = path.relative_to(package_dir().parent).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def package_modules() -> set[str]:
    return {_module_of(p)[0] for p in package_dir().rglob("*.py")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = _dotted(node.value)
        return f"{owner}.{node.attr}" if owner else None
    return None


def private_uses(source: str, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """Where ``source`` (the text of ``module``) imports another package module's private name
    (``from falcon_h1r_lib.x import _y``, ``from .x import _y``) or reads one as an attribute (``x._y`` with ``x``
    a package module: imported by name, by alias or spelled out)."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    names: dict[str, str] = {}  # local name -> the package module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    names[alias.asname or alias.name] = f"{base}.{alias.name}"
                elif _private(alias.name) and base != module:
                    found.append(f"{module}:{node.lineno}: from {base} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in modules:
                    names[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = _dotted(node.value)
            if owner is None:
                continue
            head, _, rest = owner.partition(".")
            target = f"{names[head]}.{rest}".rstrip(".") if head in names else owner
            if target in modules and target != module:
                found.append(f"{module}:{node.lineno}: {owner}.{node.attr}")
    return sorted(set(found))


MODULES = {"falcon_h1r_lib.a", "falcon_h1r_lib.pkg", "falcon_h1r_lib.pkg.b", "falcon_h1r_lib.pkg.c"}


@pytest.mark.parametrize("source, module, flagged", [
    ("from falcon_h1r_lib.pkg.b import _helper", "falcon_h1r_lib.a", ["from falcon_h1r_lib.pkg.b import _helper"]),
    ("from .b import ok, _helper", "falcon_h1r_lib.pkg.c", ["from falcon_h1r_lib.pkg.b import _helper"]),
    ("from ..a import _helper", "falcon_h1r_lib.pkg.c", ["from falcon_h1r_lib.a import _helper"]),
    ("from . import b\nb._state", "falcon_h1r_lib.pkg.c", ["b._state"]),
    ("from .pkg import b as bee\nbee._state", "falcon_h1r_lib.a", ["bee._state"]),
    ("import falcon_h1r_lib.pkg.b as bee\nbee._f()", "falcon_h1r_lib.a", ["bee._f"]),
    ("import falcon_h1r_lib.pkg.b\nfalcon_h1r_lib.pkg.b._f()", "falcon_h1r_lib.a", ["falcon_h1r_lib.pkg.b._f"]),
    ("from falcon_h1r_lib.pkg.b import helper as _helper", "falcon_h1r_lib.a", []),  # a public name, kept local
    ("self._x, obj._name, b._x", "falcon_h1r_lib.a", []),  # attributes of objects; b is not imported here
    ("from falcon_h1r_lib.a import _helper", "falcon_h1r_lib.a", []),  # its own
    ("from numpy import _core", "falcon_h1r_lib.a", []),  # another package's business
    ("from falcon_h1r_lib.pkg.b import __version__", "falcon_h1r_lib.a", []),  # dunders are public
])
def test_the_scan_finds_private_uses_across_modules(source, module, flagged):
    found = private_uses(source, module, False, MODULES)
    assert [f.split(": ", 1)[1] for f in found] == flagged


def test_no_module_uses_another_modules_private_names():
    modules = package_modules()
    found = []
    for path in sorted(package_dir().rglob("*.py")):
        module, is_package = _module_of(path)
        found += private_uses(path.read_text(), module, is_package, modules)
    assert not found, "private names used across modules (make them public where they belong):\n" + "\n".join(found)
