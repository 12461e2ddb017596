"""The ecgcode package has no import cycle, counting imports inside functions too, and its
groups import in the direction docs/ARCHITECTURE.md gives.

A function-level import hides a cycle from Python (the module is complete by the time the
function runs) but not from a reader: the two modules still depend on each other. The
graph is built from the source with ``ast``, without importing anything.
"""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ecgcode"
ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"


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


# --- The groups' direction (docs/ARCHITECTURE.md, "Import direction") --------------------
def documented_direction(text):
    """{group: set of groups it may import} from the block of ``group -> groups`` lines."""
    for block in re.findall(r"^```\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        lines = block.strip().splitlines()
        rules = [re.fullmatch(r"(\w+)\s+->((?:\s+\w+)*)\s*", line) for line in lines]
        if lines and all(rules):
            return {rule.group(1): set(rule.group(2).split()) for rule in rules}
    raise AssertionError("docs/ARCHITECTURE.md has no block of 'group -> groups' lines")


def group_of(module):
    """The group of a module of the package (``ecgcode.model.network`` -> ``model``); None
    for the package itself (its ``__init__``: the version)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def wrong_direction(graph, allowed):
    """``a -> b`` for every import of a group that ``allowed`` does not let it make."""
    return sorted(f"{module} -> {target}" for module, targets in graph.items()
                  for target in targets
                  if None not in (group_of(module), group_of(target))
                  and group_of(target) != group_of(module)
                  and group_of(target) not in allowed.get(group_of(module), ()))


def test_the_direction_check_reads_the_block_and_finds_a_wrong_import():
    allowed = documented_direction("text\n```\nmodel  -> data common\ndata   -> common\n"
                                   "common ->\n```\n")
    assert allowed == {"model": {"data", "common"}, "data": {"common"}, "common": set()}
    graph = {"ecgcode.data.hdf5": {"ecgcode.common", "ecgcode.model.network"},
             "ecgcode.model.network": {"ecgcode.data.hdf5", "ecgcode"}}
    assert wrong_direction(graph, allowed) == ["ecgcode.data.hdf5 -> ecgcode.model.network"]


def test_the_groups_import_in_the_documented_direction():
    allowed = documented_direction(ARCHITECTURE.read_text())
    graph = import_graph()
    groups = {group_of(module) for module in graph} - {None}
    assert set(allowed) == groups, "docs/ARCHITECTURE.md's import direction names other groups"
    assert all(targets <= groups for targets in allowed.values())
    wrong = wrong_direction(graph, allowed)
    assert not wrong, "imports against docs/ARCHITECTURE.md's direction:\n" + "\n".join(wrong)
