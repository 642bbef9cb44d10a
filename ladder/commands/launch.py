"""`ladder launch PLAN --backend {local,tpu-vm,queued-resources,xpk} [--dry-run]`: see launch/."""

from __future__ import annotations

from ladder.launch import BACKENDS, CLOUD, LaunchOptions, launch_plan
from ladder.launch.costs import parse_prices
from ladder.launch.jobs import parse_slice_overrides
from ladder.commands.common import POSITIVE, add_run_root, real, refuse_unread_options, run_root, whole

TAKES_CONFIG = True  # the overrides reach every rung's `ladder train`
EXAMPLES = """
ladder launch smoke.json --backend local --parallel 2
ladder launch olmo.json --backend queued-resources --chip v5p --spot --run-root gs://my-bucket/olmo-ladder --dry-run
ladder launch plan.json --backend local --config.train.log_every=10
"""


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file written by `ladder plan -o`")
    parser.add_argument("--backend", choices=list(BACKENDS), default="local", help="where the rungs run")
    parser.add_argument("--dry-run", action="store_true", help="print every command exactly; execute nothing "
                        "(cloud backends: first compile each rung for its slice when libtpu is installed)")
    parser.add_argument("--no-compile-check", dest="compile_check", action="store_false",
                        help="dry run: skip compiling each rung for its slice (ladder compile)")
    add_run_root(parser, "root of the rungs' run dirs (a path, or gs://BUCKET/PATH for cloud backends); rung "
                         "run dir = ROOT/RUNG (default, local backend: runs/<plan name>; cloud backends need one)")
    parser.add_argument("--rung", action="append", dest="rungs", metavar="NAME", help="launch only this rung "
                        "(repeatable)")
    cloud = parser.add_argument_group("Cloud TPU (tpu-vm, queued-resources, xpk)")
    cloud.add_argument("--chip", help="TPU generation the slices are chosen from (v4, v5e, v5p, v6e; default: "
                       "the plan's, as `ladder plan --dry-run` and `ladder compile` use)")
    cloud.add_argument("--slice", action="append", metavar="RUNG=TYPE", help="override a rung's (or a size's) "
                       "slice: 370M-5xC=v5litepod-16, 7B=2xv5p-256 (two slices over DCN); repeatable")
    cloud.add_argument("--project", help="GCP project (default: gcloud's configured project)")
    cloud.add_argument("--zone", help="zone with TPU quota, e.g. us-west4-a (default: gcloud's configured zone)")
    cloud.add_argument("--runtime-version", help="TPU software version (default: chosen per chip)")
    cloud.add_argument("--package", help="what workers pip-install: a requirement such as "
                       "'ladder[tpu] @ git+https://github.com/ORG/ladder@REF', or a gs:// wheel")
    cloud.add_argument("--image", help="xpk: container image with ladder installed")
    cloud.add_argument("--cluster", help="xpk: GKE cluster name")
    cloud.add_argument("--spot", action="store_true", help="spot (preemptible) capacity; preempted rungs resume")
    cloud.add_argument("--pack", action="store_true", help="queued-resources: one request per slice type, "
                       "running its rungs one after another")
    cloud.add_argument("--keep", action="store_true", help="leave TPU VMs / requests / workloads standing when "
                       "their rungs are done (default: delete what the launch created)")
    cloud.add_argument("--poll-s", type=POSITIVE, default=60.0, help="seconds between checks of the resources and "
                       "rungs while the launch watches them (default: %(default)g)")
    cloud.add_argument("--price", action="append", metavar="CHIP=USD", help="price per chip-hour for the cost "
                       "estimate, e.g. v5p=2.10 for spot (default: on-demand list prices, ladder/launch/costs.py); repeatable")
    cloud.add_argument("--rehearse", action="store_true", help="tpu-vm / queued-resources: run the exact worker "
                       "scripts on local processes (one per host, CPU devices), gs:// served by a local Cloud "
                       "Storage emulator, gcloud replaced by a recording stand-in (docs/cloud-tpu.md, step 0)")
    cloud.add_argument("--preempt-at", type=whole(1), metavar="STEP", help="--rehearse: kill one host of each slice "
                       "once its rung logs STEP; the launch must recreate it and the rung resume")
    cloud.add_argument("--name-prefix", default="ladder", help="prefix of TPU VM / request / workload names")
    cloud.add_argument("--work-dir", default=".ladder-launch", help="local dir for generated startup scripts")
    local = parser.add_argument_group("local")
    local.add_argument("--parallel", type=whole(1), default=1, help="rungs at once")
    local.add_argument("--processes", type=whole(1), default=1, help="processes per rung on 127.0.0.1 (multi-host path)")
    local.add_argument("--devices", help="comma-separated GPU ids split between --parallel rungs, e.g. 0,1,2,3")
    local.add_argument("--max-attempts", type=whole(1), default=3, help="tries per rung before it is failed")
    local.add_argument("--stall-minutes", type=real(0.0), default=60.0, help="stop (and retry) an attempt whose "
                       "trainers log nothing for this long (0: never)")


# option dest -> (its flag, the backends that read it). Before, `--backend local --spot` (or --zone, --pack, ...)
# launched without a word that the option meant nothing there.
OPTION_BACKENDS = {
    "slice": ("--slice", CLOUD), "project": ("--project", CLOUD), "zone": ("--zone", CLOUD),
    "runtime_version": ("--runtime-version", ("tpu-vm", "queued-resources")),
    "package": ("--package", ("tpu-vm", "queued-resources")), "image": ("--image", ("xpk",)),
    "cluster": ("--cluster", ("xpk",)), "spot": ("--spot", CLOUD), "pack": ("--pack", ("queued-resources",)),
    "keep": ("--keep", CLOUD), "price": ("--price", CLOUD), "name_prefix": ("--name-prefix", CLOUD),
    "work_dir": ("--work-dir", ("tpu-vm", "queued-resources")), "parallel": ("--parallel", ("local",)),
    "processes": ("--processes", ("local",)), "max_attempts": ("--max-attempts", ("local",)),
    "stall_minutes": ("--stall-minutes", ("local",)),
}


def run(args) -> int:
    readers = dict(OPTION_BACKENDS)
    if args.rehearse:  # a rehearsal plays a cloud launch with local processes
        readers.pop("processes")
    refuse_unread_options(args, add_arguments, readers, args.backend, "--backend")
    root = run_root(args) if args.backend == "local" else (args.run_root or "")
    opts = LaunchOptions(
        plan_path=args.plan, run_root=root, backend=args.backend, dry_run=args.dry_run, chip=args.chip,
        slices=parse_slice_overrides(args.slice), rungs=args.rungs, overrides=tuple(args.config_overrides),
        compile_check=args.compile_check,
        project=args.project, zone=args.zone, runtime_version=args.runtime_version, package=args.package,
        image=args.image, cluster=args.cluster, spot=args.spot, pack=args.pack, name_prefix=args.name_prefix,
        keep=args.keep, poll_s=args.poll_s, prices=parse_prices(args.price),
        work_dir=args.work_dir, parallel=args.parallel, processes=args.processes,
        devices=args.devices.split(",") if args.devices else None, max_attempts=args.max_attempts, stall_minutes=args.stall_minutes,
    )
    if args.rehearse or args.preempt_at is not None:
        from ladder.launch import rehearse

        return rehearse.rehearse(opts, preempt_at=args.preempt_at)
    return launch_plan(opts)
