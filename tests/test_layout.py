"""The fluent core reaches the integrations (Ray, the MLflow bridge) only through the seam
in ``_integrations``: it names neither, and the package's modules import no cycle."""

import ast
import pathlib

import fastflow

PACKAGE = pathlib.Path(fastflow.__file__).parent


def _modules():
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(modules):
    edges = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t if t in modules else node.module for t in targets]
            else:
                continue
            # Every submodule imports its package first; that edge is not a dependency.
            edges[name].update(t for t in targets if t in modules and t != "fastflow")
    return edges


def test_no_import_cycles_among_the_packages_modules():
    edges = _imports(_modules())
    cycles = []
    for start in edges:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    cycles.append(" -> ".join(path + [start]))
                elif nxt not in path:
                    stack.append((nxt, path + [nxt]))
    assert not cycles, cycles


def test_the_fluent_core_names_neither_ray_nor_mlflow():
    for core in ("fluent.py", "_context.py"):
        tree = ast.parse((PACKAGE / core).read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        assert not [n for n in names if "ray" in n.split(".") or "mlflow" in n.split(".")]
        assert not [n for n in names if n.startswith("fastflow._bridge")], core
