"""The repository keeps setup.cfg's line limit (flake8's max-line-length) in every Python file."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_line_is_within_the_configured_limit():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    limit = config.getint("flake8", "max-line-length")
    long_lines = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("cvae", "tests", "benchmarks", "examples")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if len(line) > limit
    ]
    assert limit == 120 and not long_lines, long_lines


# The layers of cvae/, lowest first (docs/design.md): a module imports only from its own layer
# or a lower one, counting imports inside functions.
LAYERS = [
    ["_random", "_validation", "_atomic", "plotting", "metrics", "datasets", "nn", "neighbors"],
    ["data"],
    ["spec", "export"],
    ["training"],
    ["_inference", "estimator"],
    ["files", "cvae", "_demo", "cli", "__init__", "__main__"],
]


def _layer(module):
    """The layer of a module named relative to cvae (``data.rows`` -> data's layer)."""
    head = module.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if head in names)


def _imports(path):
    """The cvae modules ``path`` imports, relative to cvae, anywhere in the file."""
    import ast

    parts = list(path.relative_to(ROOT / "cvae").with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            if node.module:
                found.add(".".join(base + [node.module]))
            else:
                found.update(".".join(base + [alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cvae."):
            found.add(node.module[len("cvae."):])
    return {module for module in found if module}


def test_imports_go_down_the_layers():
    upward = []
    for path in sorted((ROOT / "cvae").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT / "cvae").with_suffix("").parts)
        for module in _imports(path):
            if _layer(module) > _layer(name):
                upward.append(f"{name} imports {module}")
    assert not upward, upward


def test_the_neighbors_package_is_a_leaf():
    for path in (ROOT / "cvae" / "neighbors").glob("*.py"):
        assert all(module.startswith("neighbors") for module in _imports(path)), path.name


def test_at_most_14_modules_at_the_top():
    top = [p for p in (ROOT / "cvae").glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= 14, sorted(p.name for p in top)


def test_the_top_level_holds_public_layers_and_underscored_internals():
    # estimator and spec keep their names: every pickle names them (CompressionVAE, RunSpec)
    public = {"cli", "cvae", "files", "plotting", "export", "datasets", "metrics", "estimator", "spec"}
    top = {p.stem for p in (ROOT / "cvae").glob("*.py")} - {"__init__", "__main__"}
    assert {name for name in top if not name.startswith("_")} == public


def test_no_function_is_over_80_lines():
    import ast

    long = [f"{path.relative_to(ROOT)}:{node.name}" for path in sorted((ROOT / "cvae").rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name != "__init__" and node.end_lineno - node.lineno >= 80]
    assert not long, long


def test_the_design_map_names_every_module():
    design = (ROOT / "docs" / "design.md").read_text()
    missing = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "cvae").rglob("*.py"))
               if path.name not in ("__init__.py", "__main__.py") and path.name not in design]
    assert not missing, missing
