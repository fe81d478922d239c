"""The public face of `durable` (after trio's test_exports.py and httpx's test_exported_members.py),
and a scan of the source for code-executing deserialization (F15: no pickle anywhere)."""

from __future__ import annotations

import ast
import inspect
import types
from pathlib import Path

import pytest

import durable

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = [name for name in durable.__all__ if not isinstance(getattr(durable, name, None), types.ModuleType)]


def test_all_is_sorted_and_unique() -> None:
    assert durable.__all__ == sorted(set(durable.__all__))


def all_literal(source: str) -> list[str] | None:
    """The names of a module's ``__all__ = [...]`` if it is a literal list of strings, else None."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            if not isinstance(node.value, ast.List):
                return None
            elements = node.value.elts
            names = [e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            return names if len(names) == len(elements) else None
    return None


def test_all_is_a_literal_sorted_list() -> None:
    """Written out in order, not computed: type checkers read the re-exports from it."""
    names = all_literal((ROOT / "durable" / "__init__.py").read_text())
    assert names is not None, "durable.__all__ must be a literal list of strings"
    assert names == sorted(names) and names == durable.__all__


def test_the_literal_check_refuses_a_computed_all() -> None:
    assert all_literal('__all__ = ["a", "b"]') == ["a", "b"]
    assert all_literal('__all__ = sorted(["b", "a"])') is None
    assert all_literal('__all__ = ["a", name]') is None
    assert all_literal("x = 1") is None


def test_every_name_in_all_exists() -> None:
    missing = [name for name in durable.__all__ if not hasattr(durable, name)]
    assert missing == []


def test_every_public_attribute_is_in_all() -> None:
    public = {name for name, value in vars(durable).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert public - set(durable.__all__) == set()


#: the public names that are objects, not classes or functions, and the class of each
INSTANCES = {"logger": "ContextLogger"}


@pytest.mark.parametrize("name", PUBLIC)
def test_public_objects_show_the_public_path_and_a_docstring(name: str) -> None:
    obj = getattr(durable, name)
    if name in INSTANCES:
        assert type(obj).__name__ == INSTANCES[name] and inspect.getdoc(obj), name
        return
    assert callable(obj), f"durable.{name} is not a class or function"
    assert obj.__module__ == "durable", f"durable.{name}.__module__ is {obj.__module__!r}"
    assert obj.__name__ == name and obj.__qualname__ == name, (
        f"durable.{name} calls itself {obj.__qualname__!r}"
    )
    assert inspect.getdoc(obj), f"durable.{name} has no docstring"


# --- no code-executing deserialization or dynamic evaluation in the library -----------------

BANNED_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
BANNED_CALLS = {"eval", "exec"}
SOURCES = sorted((ROOT / "durable").rglob("*.py"))  # the worker and the CLI are subpackages


def offences(path: Path, root: Path = ROOT) -> list[str]:
    """Lines of `path` that import a banned module or call eval/exec/__import__."""
    where = path.relative_to(root)
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if name in BANNED_CALLS or (name == "__import__"):
                found.append((node.lineno, f"calls {name}()"))
            # a module named by a string is imported only by the CLI, from its own command line
            if name == "import_module" and path.parent.name != "cli":
                found.append((node.lineno, "imports a module by name"))
            continue
        else:
            continue
        for module in modules:
            if module.split(".")[0] in BANNED_MODULES:
                found.append((node.lineno, f"imports {module}"))
    return [f"{where}:{line}: {what}" for line, what in sorted(found)]


def test_sources_are_found() -> None:
    assert {p.parent.name for p in SOURCES} >= {"durable", "worker", "cli"}
    assert len(SOURCES) >= 10


def test_no_pickle_marshal_shelve_eval_or_exec() -> None:
    assert [line for path in SOURCES for line in offences(path)] == []


def test_the_scan_catches_what_it_looks_for(tmp_path: Path) -> None:
    probe = tmp_path / "durable" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("import pickle\nfrom marshal import loads\nimport shelve as s\neval('1')\n"
                     "builtins.exec('x')\n__import__('os')\nimportlib.import_module('os')\n")
    assert offences(probe, tmp_path) == [
        "durable/probe.py:1: imports pickle", "durable/probe.py:2: imports marshal",
        "durable/probe.py:3: imports shelve", "durable/probe.py:4: calls eval()",
        "durable/probe.py:5: calls exec()", "durable/probe.py:6: calls __import__()",
        "durable/probe.py:7: imports a module by name",
    ]
