"""Rooms a newcomer can read in one sitting (issue 20).

A module of the package stays within ~500 lines and a function within ~80, unless the code
says why: a ``# long: <reason>`` comment on the line above the ``def`` (or its first
decorator), or in the first five lines of the module.
"""

import ast
import pathlib

import pytest

import ergo_ray

PACKAGE = pathlib.Path(ergo_ray.__file__).parent
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
MODULES = sorted(PACKAGE.rglob("*.py"))


def _has_reason(line: str) -> bool:
    return line.strip().startswith("# long:")


def _long_functions(path: pathlib.Path, root: pathlib.Path = PACKAGE.parent) -> list[str]:
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        length = node.end_lineno - node.lineno + 1
        if length > MAX_FUNCTION_LINES and not (start >= 2 and _has_reason(lines[start - 2])):
            found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} "
                         f"({length} lines)")
    return found


def test_the_package_has_modules_to_check():
    assert len(MODULES) > 50


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_short_or_says_why(path):
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_MODULE_LINES or any(_has_reason(x) for x in lines[:5]), (
        f"{path.relative_to(PACKAGE.parent)} has {len(lines)} lines")


def test_functions_are_short_or_say_why():
    found = [f for path in MODULES for f in _long_functions(path)]
    assert not found, "functions over 80 lines without a '# long:' reason:\n" + "\n".join(found)


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    bare = tmp_path / "bare.py"
    bare.write_text(f"def f():\n{body}\n")
    reasoned = tmp_path / "reasoned.py"
    reasoned.write_text(f"# long: one table, read top to bottom\ndef f():\n{body}\n")
    assert len(_long_functions(bare, tmp_path)) == 1
    assert _long_functions(reasoned, tmp_path) == []
