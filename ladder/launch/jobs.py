"""From a plan to jobs: one per rung, with its run directory, its slice and the overrides it trains with.

Every backend launches the same `Job`s, so slice choice, run-directory naming and the checks that keep a
relaunch safe (skip finished rungs, refuse a run directory that belongs to another plan) live here once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

from ladder import chips, storage, topology
from ladder.errors import LadderError
from ladder.train_config import RECIPE_KEYS, resolve_rung

# The trainer's mesh axis across slices (DCN); multislice rungs train data-parallel over it.
DCN_DATA_KEY = "mesh.dcn_data"
DEFAULT_CHIP = "v5e"


@dataclasses.dataclass(frozen=True)
class Job:
    """One rung as a backend sees it."""

    rung: dict
    run_dir: str  # <run root>/<rung name>: a local path or gs://...
    accelerator: str = ""  # Cloud TPU accelerator type, e.g. "v5litepod-16"; "" on the local backend
    num_slices: int = 1
    overrides: tuple[str, ...] = ()  # "key=value" train-config overrides, passed as --config.key=value
    # The train config the rung trains with (train_config.resolve_rung with `overrides`) and its hash, which
    # the trainer records in config.json: the relaunch ownership check compares against it.
    config: object = dataclasses.field(default=None, compare=False, repr=False)
    config_hash: str = ""
    # "RUNG on SLICE: recipe REMAT xK (estimate G GiB, P% HBM)": the memory recipe it trains with on this
    # slice (recipe_note); "" where none was worked out (local backend, a batch that does not split)
    recipe: str = dataclasses.field(default="", compare=False)
    # The plan file the trainer reads the rung from; "" is the launch's own (LaunchOptions.plan_path). Set for
    # the rungs of LaunchOptions.extra_plans, which ride along in another plan's launch.
    plan_path: str = dataclasses.field(default="", compare=False)

    @property
    def name(self) -> str:
        return self.rung["name"]


def plan_chip(plan: dict, chip: str | None = None) -> str:
    """The TPU generation slices are chosen from: `chip` when given, else the plan's family's chip (what
    `ladder plan --dry-run` checked, v5p for the OLMo ladder), else DEFAULT_CHIP for families planned on CPU.
    One rule for plan, compile and launch, so one plan has one cost whichever verb prints it."""
    if chip:
        return chips.chip(chip).name
    from ladder import plan as plan_lib

    family = getattr(plan_lib, "FAMILIES", {}).get(plan.get("family"))
    name = getattr(family, "chip", None)
    return name if name in chips.CHIPS and chips.CHIPS[name].type_prefix else DEFAULT_CHIP


def load(plan_path: str) -> dict:
    """The planner's validated plan (version and keys checked there, a LadderError otherwise)."""
    from ladder import plan as plan_lib

    return plan_lib.load_plan(plan_path)


def plan_digest(plan_path: str) -> str:
    """The first 12 hex digits of the plan file's sha256: names the copy shipped to the workers."""
    return hashlib.sha256(Path(plan_path).read_bytes()).hexdigest()[:12]


def parse_slice_overrides(items: list[str] | None) -> dict[str, tuple[str, int]]:
    """`--slice RUNG=TYPE` items -> {rung name or size: (accelerator type, slices)}.

    TYPE is a Cloud TPU accelerator type, optionally prefixed by a slice count: `v5litepod-16`,
    `2xv5litepod-256` (two slices, trained data-parallel over DCN).
    """
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        m = re.fullmatch(r"(?:(\d+)x)?(\S+)", value.strip())
        if not sep or not key or not m:
            raise LadderError(f"--slice {item}: expected RUNG=TYPE such as 370M-5xC=v5litepod-16 or 7B=2xv5p-256")
        chips.parse_slice(m.group(2))  # validates the accelerator type
        n = int(m.group(1) or 1)
        if n < 1:
            raise LadderError(f"--slice {item}: the slice count must be at least 1")
        out[key.strip()] = (m.group(2), n)
    return out


def split_slices(accelerator: str) -> tuple[str, int]:
    """'2xv5p-256' -> ('v5p-256', 2); 'v5litepod-16' -> ('v5litepod-16', 1) (choose_slice may give either)."""
    m = re.fullmatch(r"(?:(\d+)x)?(\S+)", accelerator)
    return m.group(2), int(m.group(1) or 1)


def selected_rungs(plan: dict, rungs: list[str] | None, slices: dict) -> list[dict]:
    """The plan's rungs `--rung` names (all when none), in `--rung` order; every `--slice` key must name a rung
    or a size of the plan, and no rung may be listed twice."""
    by_name = {r["name"]: r for r in plan["rungs"]}
    sizes = {r["size"] for r in plan["rungs"]}
    unknown = [k for k in slices if k not in by_name and k not in sizes]
    if unknown:
        raise LadderError(f"--slice: no rung or size named {', '.join(unknown)} in the plan; "
                          f"rungs: {', '.join(by_name)}")
    if not rungs:
        return list(plan["rungs"])
    twice = next((n for i, n in enumerate(rungs) if n in rungs[:i]), None)
    if twice is not None:  # before: launched (and costed) twice, two trainers on one run directory
        raise LadderError(f"--rung: {twice} is listed twice; list each rung once")
    missing = [n for n in rungs if n not in by_name]
    if missing:
        raise LadderError(f"--rung: no rung named {', '.join(missing)} in the plan; rungs: {', '.join(by_name)}")
    return [by_name[n] for n in rungs]


def make_jobs(
    plan: dict,
    run_root: str,
    *,
    chip: str | None = DEFAULT_CHIP,
    slices: dict[str, tuple[str, int]] | None = None,
    rungs: list[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> list[Job]:
    """One Job per rung (or per named rung), in plan order.

    chip=None means no slices (the local backend). Otherwise each rung's slice is `slices[name]`,
    else `slices[size]`, else `ladder.plan.choose_slice(rung, chip)`. Multislice rungs get the DCN data
    axis; a rung whose batch cannot split over every chip of its slice gets the tensor-parallel mesh the
    planner and the compile check assume (`mesh_overrides`); user overrides come last so they win.
    """
    slices = dict(slices or {})
    jobs = []
    for rung in selected_rungs(plan, rungs, slices):
        accelerator, n_slices, extra = "", 1, []
        if chip is not None:
            if rung["name"] in slices or rung["size"] in slices:
                accelerator, n_slices = slices.get(rung["name"]) or slices[rung["size"]]
            else:
                from ladder import plan as plan_lib

                accelerator, n_slices = split_slices(plan_lib.choose_slice(rung, chip))
            if n_slices > 1:
                extra.append(f"{DCN_DATA_KEY}={n_slices}")
            config, _ = resolve_rung(plan, rung, tuple(extra) + tuple(overrides))
            extra += mesh_overrides(config, accelerator, n_slices)
            extra += recipe_overrides(rung, config, accelerator, n_slices, overrides)
        job_overrides = tuple(extra) + tuple(overrides)
        config, digest = resolve_rung(plan, rung, job_overrides)
        note = recipe_note(rung, config, accelerator, n_slices, overrides) if accelerator else ""
        jobs.append(Job(rung, storage.join(run_root, rung["name"]), accelerator, n_slices, job_overrides, config,
                        digest, note))
    return jobs


def _overridden(overrides, path: str) -> bool:
    return any(o.partition("=")[0].strip() == path for o in overrides)


def recipe_overrides(rung: dict, config, accelerator: str, num_slices: int, overrides=()) -> tuple[str, ...]:
    """`model.remat=R`, `train.microbatches=K` where the recipe for this slice (plan.resources.refit_rung,
    the refit `ladder compile` does) differs from the one the plan stamped: the worker reads the plan's
    rung, so the refit travels as --config flags. Nothing for a key the user set (--config wins), nothing
    when the refit agrees with the stamp (the planner's own slice: the run's config_hash is unchanged).
    LadderError (rung, slice, estimate) when no recipe fits the slice and the user set neither key."""
    from ladder.plan.resources import refit_rung

    user_set = any(_overridden(overrides, path) for path in RECIPE_KEYS.values())
    refit, recipe = refit_rung(rung, accelerator, num_slices, strict=not user_set)
    if recipe is None:
        return ()
    current = {"remat": config.model.remat, "microbatches": config.train.microbatches}
    return tuple(f"{path}={refit[key]}" for key, path in RECIPE_KEYS.items()
                 if not _overridden(overrides, path) and refit[key] != current[key])


def recipe_note(rung: dict, config, accelerator: str, num_slices: int, overrides=()) -> str:
    """The line the launch prints for a rung: the recipe it trains with on its slice and the planner's
    estimate of its memory per device (docs/planning.md), e.g. `20M-1xC on v5litepod-8: recipe full x4
    (estimate 9.1 GiB, 57% HBM)`. "" when the batch does not split over the slice (no estimate)."""
    from ladder.plan.resources import recipe_memory

    remat, k = config.model.remat, config.train.microbatches
    mem = recipe_memory(rung, accelerator, num_slices, remat, k)
    if mem is None:
        return ""
    hbm = chips.parse_slice(accelerator)[0].hbm_bytes
    where = f"{num_slices}x{accelerator}" if num_slices > 1 else accelerator
    given = " (--config)" if any(_overridden(overrides, p) for p in RECIPE_KEYS.values()) else ""
    from ladder.topology import HBM_USABLE_FRACTION

    over = ""
    if mem["total"] > HBM_USABLE_FRACTION * hbm:
        over = f"; over the {HBM_USABLE_FRACTION:.0%} limit, it may run out of HBM"
    return (f"{rung['name']} on {where}: recipe {remat} x{k}{given} "
            f"(estimate {mem['total'] / chips.GiB:.1f} GiB, {mem['total'] / hbm:.0%} HBM{over})")


def mesh_overrides(config, accelerator: str, num_slices: int) -> tuple[str, ...]:
    """`mesh.fsdp=F`, `mesh.tensor=T` when the rung's train config keeps the default mesh and its batch
    cannot split over every chip of the slice: the mesh `ladder.topology.default_mesh_overrides` chooses
    (13b-5t on v5p-512: fsdp 64 x tensor 4). Else empty."""
    chip, n_chips = chips.parse_slice(accelerator)
    return topology.default_mesh_overrides(config, topology.Topology(chip, n_chips, num_slices))


def resource_name(prefix: str, *parts: str) -> str:
    """A Cloud TPU / GKE resource name: lowercase letters, digits and dashes, starting with a letter.

    '370M-5xC' -> 'ladder-370m-5xc'; '1.3B-10xC' -> 'ladder-1-3b-10xc'. GKE caps workload names, so
    names are kept to 40 characters (a hash suffix keeps long ones distinct).
    """
    raw = "-".join((prefix,) + parts).lower()
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", raw)).strip("-")
    if not name or not name[0].isalpha():
        name = "l-" + name
    if len(name) > 40:
        name = name[:33].rstrip("-") + "-" + hashlib.sha256(raw.encode()).hexdigest()[:6]
    return name
