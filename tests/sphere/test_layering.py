"""The modules of keras_sphere.sphere import each other without a circle.

Every import counts, at module level and inside functions (a lazy import that points
back up is still a circle; it only moves the failure from import time to call time).
"""

import ast
import pathlib
import textwrap

import keras_sphere.sphere

PACKAGE = "keras_sphere.sphere"
PACKAGE_DIR = pathlib.Path(keras_sphere.sphere.__file__).parent


def module_names(package_dir, package):
    """Dotted name -> path of every module of the package (itself included)."""
    names = {}
    for path in sorted(package_dir.glob("*.py")):
        stem = path.stem
        names[package if stem == "__init__" else f"{package}.{stem}"] = path
    return names


def imported_modules(node, module, is_package, modules):
    """Modules of `modules` that one import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    if node.level:  # relative: resolve against the importing module's package
        parts = module.split(".")
        base = parts if is_package else parts[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module
    found = []
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        if submodule in modules:
            found.append(submodule)
        elif source in modules:
            found.append(source)
    return found


class _ImportFinder(ast.NodeVisitor):
    """Every import statement of a module with the function or class it sits in."""

    def __init__(self):
        self.scopes = []
        self.found = []  # (statement, where)

    def visit_FunctionDef(self, node):
        self.scopes.append(f"in {node.name}()")
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.scopes.append(f"in class {node.name}")
        self.generic_visit(node)
        self.scopes.pop()

    def visit_Import(self, node):
        self.found.append((node, self.scopes[-1] if self.scopes else "module level"))

    visit_ImportFrom = visit_Import


def import_graph(package_dir, package):
    """module -> {imported module: (line, where)} for imports within the package.

    Imports at module level, inside functions and methods, and under ``if`` or
    ``try`` all count; for a module imported twice the first statement is kept.
    """
    modules = module_names(package_dir, package)
    graph = {}
    for module, path in modules.items():
        finder = _ImportFinder()
        finder.visit(ast.parse(path.read_text(), filename=str(path)))
        is_package = path.name == "__init__.py"
        edges = {}
        for node, where in finder.found:
            for target in imported_modules(node, module, is_package, modules):
                if target != module:
                    edges.setdefault(target, (node.lineno, where))
        graph[module] = edges
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules [a, b, ..., a], or None."""
    state = {}  # module -> "open" while on the DFS stack, "done" after
    stack = []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def describe(cycle, graph):
    lines = [" -> ".join(name.rsplit(".", 1)[-1] for name in cycle)]
    for source, target in zip(cycle, cycle[1:], strict=False):
        line, where = graph[source][target]
        lines.append(f"  {source} imports {target} ({where}, line {line})")
    return "\n".join(lines)


def test_sphere_modules_have_no_import_cycle():
    graph = import_graph(PACKAGE_DIR, PACKAGE)
    assert len(graph) > 5, sorted(graph)
    cycle = find_cycle(graph)
    assert cycle is None, f"Import cycle in {PACKAGE}:\n{describe(cycle, graph)}"


def write_package(root, files):
    package_dir = root / "pkg"
    package_dir.mkdir()
    for name, text in files.items():
        (package_dir / name).write_text(textwrap.dedent(text))
    return package_dir


def test_checker_sees_imports_inside_functions(tmp_path):
    # The circle the sphere core had: a lazy import back up from inside a method.
    package_dir = write_package(
        tmp_path,
        {
            "__init__.py": "from pkg.top import run\n",
            "low.py": """
                class Plan:
                    def forward(self):
                        from pkg.top import _kernel

                        return _kernel(self)
            """,
            "top.py": "from pkg.low import Plan\n\ndef run(): ...\n",
        },
    )
    graph = import_graph(package_dir, "pkg")
    cycle = find_cycle(graph)
    assert cycle == ["pkg.top", "pkg.low", "pkg.top"]
    assert "pkg.low imports pkg.top (in forward(), line 4)" in describe(cycle, graph)


def test_checker_resolves_relative_and_package_imports(tmp_path):
    package_dir = write_package(
        tmp_path,
        {
            "__init__.py": "from . import a\n",
            "a.py": "from .b import thing\n",
            "b.py": "import pkg\nthing = 1\n",
        },
    )
    graph = import_graph(package_dir, "pkg")
    assert graph == {
        "pkg": {"pkg.a": (1, "module level")},
        "pkg.a": {"pkg.b": (1, "module level")},
        "pkg.b": {"pkg": (1, "module level")},
    }
    assert find_cycle(graph) == ["pkg", "pkg.a", "pkg.b", "pkg"]


def test_checker_accepts_a_layered_package(tmp_path):
    package_dir = write_package(
        tmp_path,
        {
            "__init__.py": "from pkg.top import run\n",
            "low.py": "X = 1\n",
            "top.py": "def run():\n    from pkg.low import X\n\n    return X\n",
        },
    )
    assert find_cycle(import_graph(package_dir, "pkg")) is None
