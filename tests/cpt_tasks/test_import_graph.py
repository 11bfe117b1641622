"""The packages' import graph (cpt_tasks, the jobs; cpt_pipeline, the DAG's building blocks; cpt_local, the laptop
tooling): no module imports, directly or through others, one that imports it back, and no module imports one of
a higher layer or another job (imports inside functions count: they are how the light core defers heavy ones).
No two modules share a file name.

The layers, lowest first (the README's layout section draws them): a module may import its own layer and the
ones below it; the jobs stand side by side and none imports another; only the CLI, which dispatches to every
job, imports the train job from outside ``cpt_tasks/train/``.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import grimp

from cpt_tasks.jobs import JOBS

# The jobs' packages, from the registry: the package of each job's run function (a new job needs no line here).
JOB_PACKAGES = sorted({job.run.partition(":")[0].rsplit(".", 1)[0] for job in JOBS
                       if job.run.startswith("cpt_tasks.") and job.run.partition(":")[0].count(".") == 2})
LAYERS: list[tuple[str, list[str]]] = [
    ("core", ["cpt_tasks", "cpt_tasks.errors", "cpt_tasks.framing", "cpt_tasks.storage", "cpt_tasks.layout",
              "cpt_tasks.cache", "cpt_tasks.mix", "cpt_tasks.pool", "cpt_tasks.progress", "cpt_tasks.pictures"]),
    ("configs", ["cpt_tasks.configs"]),
    ("documents", ["cpt_tasks.documents"]),
    ("registry", ["cpt_tasks.jobs"]),
    ("library", ["cpt_tasks.data", "cpt_tasks.runs", "cpt_tasks.tokenizer", "cpt_tasks.tracking"]),
    ("jobs", JOB_PACKAGES),
    ("entry points", ["cpt_tasks.cli", "cpt_tasks.cli_args"]),
    ("pipeline", ["cpt_pipeline"]),
    ("local tooling", ["cpt_local"]),
]
PACKAGES = ("cpt_tasks", "cpt_pipeline", "cpt_local")
SIDE_BY_SIDE = "jobs"  # packages of this layer import none of each other
DISPATCHERS = {"cpt_tasks.cli"}  # the modules that may import a job's insides from anywhere


def import_graph(packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """module -> the modules of ``packages`` it imports anywhere in its source."""
    graph = grimp.build_graph(*packages, cache_dir=None)
    return {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other in a circle (strongly connected, Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1 or node in graph.get(node, ()):
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def home(module: str, layers: list[tuple[str, list[str]]] = LAYERS) -> tuple[int, str] | None:
    """The layer index and package of ``module``: the longest package of the table that holds it (None: unplaced)."""
    found = [(len(package), index, package) for index, (_, packages) in enumerate(layers) for package in packages
             if module == package or (module.startswith(package + ".") and package not in ("cpt_tasks",))]
    return max(found)[1:] if found else None


def layer_violations(graph: dict[str, set[str]], layers: list[tuple[str, list[str]]] = LAYERS) -> list[str]:
    """Every import that runs up the layers or across the jobs, and every module the table does not place."""
    names = [name for name, _ in layers]
    found = [f"{module}: in no layer (add it to LAYERS)" for module in sorted(graph) if home(module, layers) is None]
    for module in sorted(graph):
        if (here := home(module, layers)) is None:
            continue
        for target in sorted(graph[module]):
            there = home(target, layers)
            if there is None:
                continue
            if there[0] > here[0]:
                found.append(f"{module} -> {target}: {names[here[0]]} imports {names[there[0]]}")
            elif there[0] == here[0] and names[here[0]] == SIDE_BY_SIDE and there[1] != here[1]:
                found.append(f"{module} -> {target}: the job {here[1]} imports the job {there[1]}")
    return found


def train_importers(graph: dict[str, set[str]]) -> list[str]:
    """Imports of the train job from outside it, the dispatching CLI aside."""
    return [f"{module} -> {target}" for module in sorted(graph) for target in sorted(graph[module])
            if (target == "cpt_tasks.train" or target.startswith("cpt_tasks.train."))
            and not module.startswith("cpt_tasks.train") and module not in DISPATCHERS]


def test_cpt_tasks_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "cpt_tasks.documents.plan_docs" in graph["cpt_tasks.plan.plan_job"]
    assert cycles(graph) == []
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on any cycle


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]] and cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_runs_up_the_layers_or_across_the_jobs():
    graph = import_graph()
    found = layer_violations(graph)
    assert found == [], "imports against the layers:\n" + "\n".join(found)
    assert home("cpt_tasks.configs.convert_config") == (1, "cpt_tasks.configs")
    assert "cpt_tasks.configs.convert_config" in graph["cpt_tasks.documents.plan_docs"]  # the graph sees the real imports


def test_only_the_cli_imports_the_train_job():
    found = train_importers(import_graph())
    assert found == [], "imports of cpt_tasks.train from outside it:\n" + "\n".join(found)


def test_the_layer_check_finds_imports_against_the_layers():
    graph = {"cpt_tasks.documents.plan_docs": {"cpt_tasks.convert.convert_job", "cpt_tasks.errors"},
             "cpt_tasks.configs.plan_config": {"cpt_tasks.documents.plan_docs", "cpt_tasks.configs.config_base"},
             "cpt_tasks.configs.config_base": set(), "cpt_tasks.errors": set(), "cpt_tasks.convert.convert_job": set(),
             "cpt_tasks.plan.plan_job": {"cpt_tasks.convert.convert_job", "cpt_tasks.plan.plan_components", "cpt_tasks.data.readers"},
             "cpt_tasks.plan.plan_components": set(), "cpt_tasks.data.readers": {"cpt_pipeline.steps"},
             "cpt_pipeline.steps": {"cpt_tasks.train.train_job"}, "cpt_tasks.train.train_job": set(),
             "cpt_tasks.cli": {"cpt_tasks.train.train_job"}, "cpt_tasks.attic": set()}
    assert layer_violations(graph) == [
        "cpt_tasks.attic: in no layer (add it to LAYERS)",
        "cpt_tasks.configs.plan_config -> cpt_tasks.documents.plan_docs: configs imports documents",
        "cpt_tasks.data.readers -> cpt_pipeline.steps: library imports pipeline",
        "cpt_tasks.documents.plan_docs -> cpt_tasks.convert.convert_job: documents imports jobs",
        "cpt_tasks.plan.plan_job -> cpt_tasks.convert.convert_job: the job cpt_tasks.plan imports the job cpt_tasks.convert",
    ]
    assert train_importers(graph) == ["cpt_pipeline.steps -> cpt_tasks.train.train_job"]


def task_id_strings(source: str, task_ids: set[str]) -> list[str]:
    """The string literals of ``source`` (docstrings aside) that are one of ``task_ids``, with their lines."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [f"line {node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in task_ids and id(node) not in docstrings]


def test_the_operators_and_the_lineage_know_no_task_id():
    """A step's wiring (gate, its input, Asset metadata, lineage) is data on the step: the operators only call it."""
    from cpt_pipeline import steps

    task_ids = {steps.step(task_id).task_id for task_id in ("plan", "convert", "verify", "train", "evaluate")}
    assert task_ids == {"plan", "convert", "verify", "train", "evaluate"}
    for module in ("operators", "lineage"):
        source = (Path(steps.__file__).parent / f"{module}.py").read_text()
        assert task_id_strings(source, task_ids) == [], f"pipeline/{module}.py names a task"
    assert task_id_strings('if self.task_id == "train":\n    pass\n', task_ids) == ["line 1: 'train'"]


def test_no_two_modules_share_a_name():
    root = Path(__file__).resolve().parents[2]
    names: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if path.name != "__init__.py" and "__pycache__" not in path.parts:
                names.setdefault(path.name, []).append(str(path.relative_to(root)))
    shared = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert len(names) > 80 and shared == {}, shared


def test_the_readme_draws_this_table():
    """The README's layer picture lists the layers top down, each line naming its packages (core: some)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    picture = readme.split("holds the table and checks it):\n\n```\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert len(picture) == len(LAYERS)
    for line, (name, packages) in zip(picture, reversed(LAYERS)):
        named = line.strip().split("  ", 1)[0]
        shown = {p.rsplit(".", 1)[-1] for p in packages if p != "cpt_tasks"}
        listed = set(named.replace(",", " ").split())
        assert shown <= listed if name != "core" else listed - {"..."} <= shown, (name, line)
