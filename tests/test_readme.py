"""tests/README.md maps every RELIABILITY item to tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def module_file(name: str) -> Path:
    """A test module by its file name, wherever it lives under tests/."""
    (path,) = TESTS.rglob(name)
    return path


def test_every_item_is_mapped_to_existing_tests() -> None:
    """Every item of RELIABILITY.md (1-67) has exactly one row, and each test a row
    names exists."""
    text = (TESTS / "README.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \|[^|]*\| (.*) \|$", text, re.MULTILINE))
    numbers = sorted(int(n) for n in rows)
    assert numbers == list(range(1, 68))
    for item, cell in rows.items():
        names = re.findall(r"`(test_\w+\.py)::(\w+)`", cell)
        assert names, f"item {item} names no test"
        for module, name in names:
            tree = ast.parse(module_file(module).read_text())
            defined = {
                n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))
            }
            assert name in defined, f"item {item}: {module}::{name} does not exist"


def test_every_attack_names_existing_tests() -> None:
    """The attacks map names only tests that exist."""
    text = (TESTS / "README.md").read_text()
    section = text.split("## Attacks that once worked", 1)[1]
    names = re.findall(r"`(test_\w+\.py)::(\w+)`", section)
    assert len(names) >= 9
    for module, name in names:
        tree = ast.parse(module_file(module).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"{module}::{name} does not exist"
