"""The package's structure, as the code's own imports show it: no import cycle, the config apart from the network,
remote code that needs nothing but torch, transformers, numpy, soundfile and soxr, and files short enough to read."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from transformers.dynamic_module_utils import get_imports, get_relative_import_files

from wavlmrawnet.hub import REMOTE_CODE_FILES

PACKAGE = Path(__file__).resolve().parents[1] / "wavlmrawnet"
# What remote code may import besides the standard library (and each other).
REMOTE_CODE_IMPORTS = {"torch", "transformers", "numpy", "soundfile", "soxr"}
# The entry points transformers loads from a saved folder; the other remote-code files are what they import.
REMOTE_CODE_ENTRY_POINTS = (
    "configuration_wavlmrawnet.py",
    "modeling_wavlmrawnet.py",
    "feature_extraction_wavlmrawnet.py",
    "pipeline_wavlmrawnet.py",
    "handler.py",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path) -> set[str]:
    """The `wavlmrawnet` modules a file imports anywhere in it (function-level imports count too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "wavlmrawnet")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "wavlmrawnet":
                continue
            # `from package import module` names a module; `from module import name` names the module itself.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return found - {name}


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, without the edges into package `__init__` files that only
    re-export (a package's `__init__` importing its own submodules is how Python packages are built)."""
    graph = {}
    for name, path in MODULES.items():
        targets = {t for t in package_imports(path) if t in MODULES}
        graph[name] = {t for t in targets if not (MODULES[t].name == "__init__.py" and name.startswith(t + "."))}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_the_package():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "module",
    ["configuration_wavlmrawnet", "precision", "audio_io", "cpu_kernels"],
)
def test_the_foundations_import_nothing_of_the_package(module):
    """The config never imports the network; precision, audio reading and the CPU kernels stand alone."""
    assert package_imports(PACKAGE / f"{module}.py") == set()


def test_the_reference_layers_import_no_speed_code():
    imported = package_imports(PACKAGE / "layers.py")
    assert imported == {"wavlmrawnet.configuration_wavlmrawnet"}


def test_remote_code_is_the_entry_points_and_what_they_import():
    """transformers copies a remote-code file's relative imports with it: the set the Hub gets is exactly those."""
    closure = set(REMOTE_CODE_ENTRY_POINTS)
    for entry in REMOTE_CODE_ENTRY_POINTS:
        closure.update(Path(f).name for f in get_relative_import_files(str(PACKAGE / entry)))
    assert closure == set(REMOTE_CODE_FILES)


@pytest.mark.parametrize("filename", REMOTE_CODE_FILES)
def test_remote_code_imports_only_torch_transformers_numpy_soundfile_and_soxr(filename):
    """What transformers checks before loading remote code (imports inside try/except are optional)."""
    third_party = {name for name in get_imports(str(PACKAGE / filename)) if name not in sys.stdlib_module_names}
    assert third_party <= REMOTE_CODE_IMPORTS, third_party - REMOTE_CODE_IMPORTS


def test_no_file_in_the_package_is_over_600_lines():
    lengths = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 600} == {}
