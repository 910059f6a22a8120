"""The repository's layout holds: the backend's rooms import only the rooms below them (no
cycles), ``shared/`` imports neither torch nor bpy nor the backend, the add-on never imports
torch or the backend, and no module is over the size a reader holds in mind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKEND = ROOT / "backend"
MAX_LINES = 450

# Each room and what it may import besides ``steadytalk_shared`` and the top-level helpers.
ALLOWED = {
    "performance": set(),
    "lipsync": {"performance"},
    "face": set(),
    "avatar": {"face", "lipsync", "performance"},
    "render": {"avatar", "face", "lipsync", "performance"},
    "portrait": {"avatar", "face", "lipsync", "performance"},
    "evaluation": {"render", "portrait", "avatar", "face", "lipsync", "performance"},
    "service": {"render", "portrait", "avatar", "face", "lipsync", "performance"},
    "cli": {"service", "evaluation", "render", "portrait", "avatar", "face", "lipsync", "performance"},
}
TOP_LEVEL_HELPERS = {"errors", "atomic", "device", "children", "data", "__version__"}


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports (absolute dotted names, relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # ``from . import x``: x may be a module
                    names.update(f"{module}.{alias.name}" for alias in node.names)
                names.add(module)
            elif node.module:
                names.add(node.module)
    return names


def _backend_modules() -> list[tuple[Path, str]]:
    found = []
    for path in sorted(BACKEND.rglob("*.py")):
        parts = path.relative_to(BACKEND).with_suffix("").parts
        package_parts = ("steadytalk_backend", *parts[:-1])
        found.append((path, ".".join(package_parts)))
    return found


def _room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "steadytalk_backend" else None


@pytest.mark.parametrize("path,package", _backend_modules(), ids=lambda v: str(v)[-40:])
def test_rooms_import_only_the_rooms_below_them(path: Path, package: str) -> None:
    room = _room_of(package)
    for module in _imported_modules(path, package):
        target = _room_of(module)
        if target is None or target == room or target in TOP_LEVEL_HELPERS:
            continue
        if room is None or room in TOP_LEVEL_HELPERS:
            pytest.fail(f"{path.relative_to(ROOT)}: a top-level helper imports the room {target!r}")
        assert target in ALLOWED[room], f"{path.relative_to(ROOT)} ({room}) imports {module} ({target})"


def test_every_room_is_known_and_says_what_it_is_for() -> None:
    rooms = {p.name for p in BACKEND.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms - {"data"} == set(ALLOWED)
    for room in ALLOWED:
        doc = ast.get_docstring(ast.parse((BACKEND / room / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"backend/{room}/__init__.py must say what the room may import"


def test_shared_and_addon_stay_light() -> None:
    rules = {"shared": {"torch", "bpy", "steadytalk_backend"}, "addon": {"torch", "steadytalk_backend"}}
    for folder, forbidden in rules.items():
        for path in (ROOT / folder).glob("*.py"):
            roots = {name.split(".")[0] for name in _imported_modules(path, f"steadytalk_{folder}")}
            assert not roots & forbidden, f"{path.relative_to(ROOT)} imports {roots & forbidden}"


def test_no_module_is_over_the_limit() -> None:
    paths = [*BACKEND.rglob("*.py"), *(ROOT / "addon").glob("*.py"), *(ROOT / "shared").glob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in paths if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by responsibility): {long}"
