"""The house rules on imports: leaf packages never import each other (nor the core that wires them), and the
device never imports the development tools. Read from the source with `ast`, so a late import counts too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "edgevoice"
LEAVES = ("audio", "realtime", "hw", "control", "system", "fleet")
SHARED = ("edgevoice", "edgevoice.threads", "edgevoice.secret_files")  # the version, thread names, secret files


def imports_of(path: Path) -> set[str]:
    """Every edgevoice module `path` imports (at any depth of the file), as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "edgevoice" or name.startswith("edgevoice.")}


def test_leaves_import_nothing_of_each_other_or_of_the_core() -> None:
    problems = []
    for leaf in LEAVES:
        for path in sorted((PACKAGE / leaf).rglob("*.py")):
            for name in imports_of(path):
                if name not in SHARED and name.split(".")[1] != leaf:
                    problems.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not problems, "\n".join(problems)


def test_the_leaf_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from edgevoice.hw.leds import LedShow\n")
    assert imports_of(module) == {"edgevoice.hw.leds"}


def test_nothing_outside_devkit_imports_it() -> None:
    problems = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "devkit" not in path.parts and path.name != "cli.py"  # cli starts the demo and the emulator, lazily
        for name in imports_of(path)
        if name.startswith("edgevoice.devkit")
    ]
    assert not problems, "\n".join(problems)


def undocumented_classes(path: Path) -> list[str]:
    """Every public class in `path` (at any depth: nested in a class or a function too) without a docstring."""
    return [
        f"{node.name} (line {node.lineno})"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and ast.get_docstring(node) is None
    ]


def test_every_public_class_has_a_docstring() -> None:
    problems = [
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name in undocumented_classes(path)
    ]
    assert not problems, "public classes without a docstring (what it is, what a user must know):\n" + "\n".join(
        problems
    )


def test_the_docstring_check_sees_a_missing_one(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        'class Documented:\n    """Here."""\n\n    class Inner:\n        x: int\n\n'
        "class _Private:\n    pass\n\n"
        "def f():\n    class Local:\n        '''Here too.'''\n\n"
        "    class Hidden:\n        pass\n\n"
        "class Bare:\n    x: int = 0\n    '''An attribute's docstring, not the class's.'''\n"
    )
    assert sorted(undocumented_classes(module)) == ["Bare (line 17)", "Hidden (line 14)", "Inner (line 4)"]
