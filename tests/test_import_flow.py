"""The package's imports flow one way: plan -> data -> model -> train -> eval -> results -> laws -> report ->
launch -> cli; a module imports only its own stage or earlier ones (lazy imports inside functions included),
the laws know nothing of JAX, and cloud commands live in ladder/launch/. Read from the source with `ast`
(nothing imported, well under a second), so a backward import fails here by name instead of surfacing
later as an import cycle or a laws module that needs a GPU stack."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each module's stage, by longest matching prefix. Foundations (files, errors, configs, chip tables, the
# parameter and FLOP accounting) come first: every stage may use them.
STAGES = [
    ("base", ["ladder.errors", "ladder.storage", "ladder.formats", "ladder.config", "ladder.chips", "ladder.arch",
              "ladder.gcs", "ladder.runlock", "ladder.topology", "ladder.malloc_tunables", "ladder.cpu_threads",
              "ladder.config_checks", "ladder.names", "ladder"]),
    ("plan", ["ladder.plan"]),
    ("data", ["ladder.data", "ladder.tasks"]),
    ("model", ["ladder.model", "ladder.attention", "ladder.loss", "ladder.sharding", "ladder.optimizer"]),
    ("train", ["ladder.train", "ladder.distributed", "ladder.train_config", "ladder.device_checks", "ladder.step",
               "ladder.checkpoint", "ladder.warmstart", "ladder.preemption", "ladder.metrics", "ladder.train_log",
               "ladder.rundir"]),
    ("eval", ["ladder.eval"]),
    ("results", ["ladder.results", "ladder.importers", "ladder.import_table", "ladder.sheet", "ladder.import_checks"]),
    ("laws", ["ladder.laws"]),
    ("report", ["ladder.report", "ladder.plots", "ladder.effectiveness", "ladder.specialization", "ladder.domain_filter",
                "ladder.cpt_laws", "ladder.cpt_domains", "ladder.compile_report", "ladder.aot", "ladder.hlo_flops"]),
    ("launch", ["ladder.launch", "ladder.run_state", "ladder.run_config", "ladder.run", "ladder.cpt"]),
    ("cli", ["ladder.cli", "ladder.commands", "ladder.__main__"]),
]
RANK = {stage: i for i, (stage, _) in enumerate(STAGES)}

# Backward imports that stay, each with its reason. A new one fails the test: move the code to the stage it
# belongs to (or add it here with a reason a reviewer accepts).
ALLOWED = {
    ("ladder.rundir", "ladder.results"): "a run directory's results.csv is written and read in the results table's "
                                         "format (columns, CSV splitter): the evaluator's rows are that table's rows",
}

JAX = {"jax", "jaxlib", "flax", "optax", "orbax", "tensorflow", "tensorflow_datasets", "array_record", "grain"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> str | None:
    """The stage of the longest prefix naming `module` (bare `ladder` names the package itself only, so a new
    module without a stage fails test_every_module_has_a_stage)."""
    matches = [(prefix, stage) for stage, prefixes in STAGES for prefix in prefixes
               if module == prefix or prefix != "ladder" and module.startswith(prefix + ".")]
    return max(matches, key=lambda ps: len(ps[0]))[1] if matches else None


def _imports(path: Path) -> set[str]:
    """Every module `path` imports (top level or inside functions), as dotted names."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:  # `from ladder import train` imports the module ladder.train
                sub = f"{base}.{a.name}"
                is_module = (ROOT / (sub.replace(".", "/") + ".py")).exists() or (ROOT / sub.replace(".", "/")).is_dir()
                found.add(sub if is_module else base)
    return found


MODULES = sorted((ROOT / "ladder").rglob("*.py"))


def test_every_module_has_a_stage():
    assert MODULES, "no ladder/ sources found"
    for path in MODULES:
        assert _stage(_module_name(path)), f"{path.relative_to(ROOT)}: give it a stage in STAGES"


def test_a_stage_imports_only_stages_before_it():
    backward = []
    for path in MODULES:
        src = _module_name(path)
        for dst in _imports(path):
            if dst.startswith("ladder") and RANK[_stage(dst)] > RANK[_stage(src)] and (src, dst) not in ALLOWED:
                backward.append(f"{src} ({_stage(src)}) imports {dst} ({_stage(dst)})")
    assert not backward, "imports against the flow:\n" + "\n".join(sorted(backward))


def test_allowed_exceptions_are_still_needed():
    for src, dst in ALLOWED:
        path = ROOT / (src.replace(".", "/") + ".py")
        assert dst in _imports(path), f"{src} no longer imports {dst}: drop it from ALLOWED"


@pytest.mark.parametrize("path", [p for p in MODULES if "laws" in p.relative_to(ROOT).parts],
                         ids=lambda p: p.name)
def test_the_laws_know_nothing_of_jax_or_training(path):
    imported = _imports(path)
    assert not {m.split(".")[0] for m in imported} & JAX, f"{path.name} imports a JAX-stack module"
    later = {m for m in imported if m.startswith("ladder") and RANK[_stage(m)] > RANK["laws"]}
    earlier_runtime = {m for m in imported if m.startswith("ladder") and _stage(m) in ("model", "train", "eval")}
    assert not later | earlier_runtime, f"{path.name} imports {sorted(later | earlier_runtime)}"


def test_cloud_commands_live_in_launch():
    """gcloud/xpk/kubectl command lines are built only in ladder/launch/ (other modules may name them in help
    text and messages, never run them)."""
    outside = []
    for path in MODULES:
        if "launch" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant) \
                    and node.elts[0].value in ("gcloud", "xpk", "kubectl", "gsutil"):
                outside.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not outside, "cloud command lines outside ladder/launch/: " + ", ".join(outside)


def test_the_laws_and_the_results_table_load_without_the_jax_stack():
    """The checks above read each file's own imports; this one imports every laws and results module in a fresh
    interpreter and looks at what came in with them, so a helper module between them and JAX (a foundation
    that grew a jax import) fails too. A notebook fitting a published ladder needs numpy and scipy only."""
    import subprocess
    import sys

    laws = sorted(p.stem for p in (ROOT / "ladder" / "laws").glob("*.py") if p.stem != "__init__")
    results = STAGES[RANK["results"]][1]
    code = ("import importlib, sys\n"
            f"for m in {['ladder.laws.' + m for m in laws] + results!r}: importlib.import_module(m)\n"
            f"print(sorted({{k.split('.')[0] for k in sys.modules}} & {JAX!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", f"loaded with the laws or the results table: {out.stdout.strip()}"
