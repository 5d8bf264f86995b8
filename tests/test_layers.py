"""The package's layers, read from its imports with ``ast`` (issue 14).

- The core (``gateway/*.py`` but the entry points) imports no web stack and nothing of
  ``serving/``, ``migrate/``, ``django/`` or ``dev/``.
- ``serving/`` and ``migrate/`` never import each other.
- ``django/`` imports the core only (and ``serving`` for nothing).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"
WEB_STACK = ("starlette", "httpx", "anyio", "uvicorn", "a2wsgi")
LAYERS = ("serving", "migrate", "django", "dev")
# Entry points wire the layers together; they are not part of the core.
ENTRY_POINTS = {"__init__", "cli", "wsgi"}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as an absolute dotted name."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            # `from . import x` may import a module x
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "gateway":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "core"


def modules(layer: str) -> list[Path]:
    if layer == "core":
        return [p for p in PACKAGE.glob("*.py") if p.stem not in ENTRY_POINTS]
    return sorted((PACKAGE / layer).rglob("*.py"))


def offending(layer: str, allowed: set[str], *, web_stack: bool = True) -> list[str]:
    found = []
    for path in modules(layer):
        for name in sorted(imports(path)):
            target = layer_of(name)
            if target is not None and target not in allowed:
                found.append(f"{path.relative_to(PACKAGE)} imports {name}")
            if not web_stack and name.split(".")[0] in WEB_STACK:
                found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return found


def test_the_layers_exist() -> None:
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file()


def test_core_imports_no_layer_and_no_web_stack() -> None:
    assert modules("core")
    assert offending("core", {"core"}, web_stack=False) == []


@pytest.mark.parametrize(
    ("layer", "allowed"),
    [
        ("serving", {"core", "serving"}),
        ("migrate", {"core", "migrate"}),
        ("django", {"core", "django"}),
        ("dev", {"core", "dev", "serving"}),
    ],
)
def test_layers_import_one_way(layer: str, allowed: set[str]) -> None:
    """serving and migrate never import each other; django imports the core only."""
    assert modules(layer)
    assert offending(layer, allowed) == []


def test_a_forbidden_import_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: an import of migrate from serving is reported."""
    fake = tmp_path / "gateway"
    (fake / "serving").mkdir(parents=True)
    (fake / "serving" / "__init__.py").write_text("")
    (fake / "serving" / "bad.py").write_text("from ..migrate.wire import S3Wire\n")
    (fake / "cli.py").write_text("from .serving import bad\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    assert offending("serving", {"core", "serving"}) == [
        "serving/bad.py imports gateway.migrate.wire",
        "serving/bad.py imports gateway.migrate.wire.S3Wire",
    ]


# Sizes a reader can hold in their head (issue 14): modules, classes, functions.
MAX_LINES = {"module": 400, "class": 250, "function": 60}


def oversized() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(PACKAGE)
        if text.count("\n") > MAX_LINES["module"]:
            found.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > MAX_LINES[kind]:
                found.append(f"{name}: {kind} {node.name} {length} lines")
    return found


def test_sizes() -> None:
    assert oversized() == []
