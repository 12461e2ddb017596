"""The ecgcode package has no import cycle, counting imports inside functions too.

A function-level import hides a cycle from Python (the module is complete by the time the
function runs) but not from a reader: the two modules still depend on each other. The
graph is built from the source with ``ast``, without importing anything.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ecgcode"


def module_files(package=PACKAGE):
    """{dotted module name: path} for every .py file of the package."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _base(node, module, is_package):
    """The absolute module a ``from ... import`` statement names (relative ones resolved)."""
    if not node.level:
        return node.module
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def imported_modules(module, path, modules):
    """The package's modules that ``module`` imports, anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = _base(node, module, path.name == "__init__.py")
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:  # from ecgcode.data import rows
                    found.add(submodule)
                elif base in modules:
                    found.add(base)
    found.discard(module)
    return found


def import_graph(package=PACKAGE):
    """{module: set of the package's modules it imports}."""
    modules = module_files(package)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state = {}  # module -> "open" while on the search path, "done" after

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return trail[trail.index(target):] + [target]
            if target not in state:
                cycle = visit(target, trail + [target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "ecgcode.data.hdf5" in graph["ecgcode.data.rows"]  # module level
    assert "ecgcode.data.hdf5" in graph["ecgcode.inference.outputs"]  # inside a function
    assert "ecgcode.data.rows" in graph["ecgcode.data"]  # a package's own submodules
    # from ecgcode.inference import plotting: a module named from its package
    assert "ecgcode.inference.plotting" in graph["ecgcode.inference.outputs"]


def test_find_cycle_reports_the_modules_in_order():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
