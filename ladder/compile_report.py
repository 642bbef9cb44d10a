"""What a compiled rung needs on a slice (CompileReport), what to change when it does not fit, and the
`ladder compile` table as rows (CompileRow) and text. No JAX here: ladder.aot fills the reports.
Method and measured tables: docs/tpu-compile.md.
"""

from __future__ import annotations

import dataclasses
import math

from ladder.chips import GiB
from ladder.topology import Topology, next_topology

# compiled / expected FLOPs (expected_flops_per_token) must fall in this band: XLA also counts elementwise
# work (norms, RoPE, softmax, SwiGLU, loss, AdamW) the formula leaves out, +0.5% at the ladder's widths,
# ~+5% at d=64. A lost layer, a lost or duplicated recompute, or replicated work reads outside it.
FLOPS_RATIO_BAND = (0.98, 1.10)


@dataclasses.dataclass
class CompileReport:
    """What one rung's train step needs per device on one topology (bytes), and its FLOPs per step."""

    rung: str
    topology: str
    mesh: dict  # axis -> size
    n_devices: int
    params: int
    opt_state: int
    other_args: int  # batch, step counter, RNG
    temp: int  # activations and XLA workspace live at the peak beyond arguments and outputs
    code: int
    peak: int  # XLA's peak (arguments + temporaries + non-aliased outputs)
    total: int  # peak + generated code
    hbm: int
    fits: bool
    flops_compiled: float  # whole step, all devices (nan when not counted)
    flops_6n: float  # ladder.arch 6N + attention, x tokens per step
    flops_reference: float
    flops_expected: float  # flops_6n plus the rematerialised forward when remat is on
    tokens_per_step: int
    compile_s: float  # the memory compile
    flops_s: float = 0.0  # counting the FLOPs (after the compile)
    suggestions: list[str] = dataclasses.field(default_factory=list)
    mesh_note: str = ""  # set when the mesh was chosen for the user (default_mesh_overrides)
    kernel_flops: float = 0.0  # of flops_compiled: counted by hand inside custom calls (splash attention)
    error: str = ""  # XLA's out-of-memory message when it refused to compile
    recipe: str = ""  # the memory recipe compiled: "remat POLICY x MICROBATCHES"
    estimate: int = 0  # the planner's estimate of `total` for the same recipe (0: not made)
    flops_note: str = ""  # how the FLOPs were counted (loops x trips), or why they were not

    @property
    def hbm_fraction(self) -> float:
        return self.total / self.hbm

    @property
    def flops_ratio(self) -> float:
        """compiled / 6N accounting (remat reads ~1.2-1.33 here: the recompute is real work)."""
        return self.flops_compiled / self.flops_6n

    @property
    def flops_vs_expected(self) -> float:
        return self.flops_compiled / self.flops_expected

    @property
    def flops_ok(self) -> bool | None:
        """None when not counted; else whether compiled/expected lies in FLOPS_RATIO_BAND."""
        if math.isnan(self.flops_compiled):
            return None
        return FLOPS_RATIO_BAND[0] <= self.flops_vs_expected <= FLOPS_RATIO_BAND[1]

    def fit_lines(self) -> list[str]:
        """One line saying whether the rung fits its slice (per-device GiB), then any suggestions."""
        mesh = "/".join(str(self.mesh[a]) for a in ("data", "fsdp", "tensor"))
        verdict = "fits" if self.fits else "does NOT fit"
        line = (f"{self.rung} on {self.topology} (mesh data/fsdp/tensor {mesh}): {verdict}, "
                f"{self.total / GiB:.2f} of {self.hbm / GiB:.0f} GiB HBM per device ({self.hbm_fraction:.0%}; "
                f"params {self.params / GiB:.2f}, optimizer {self.opt_state / GiB:.2f}, temp {self.temp / GiB:.2f})")
        notes = [f"  {n}" for n in self.notes()]
        return [line] + notes + [f"  suggestion: {s}" for s in self.suggestions]

    def notes(self) -> list[str]:
        """The mesh note and what part of the FLOPs was counted by hand (custom calls read as zero)."""
        out = [self.mesh_note] if self.mesh_note else []
        if self.recipe and self.estimate:
            out.append(f"{self.recipe}; planner estimate {self.estimate / GiB:.2f} GiB per device "
                       f"({self.estimate / self.total - 1:+.1%} vs compiled)")
        if self.flops_note:
            out.append(self.flops_note)
        if self.kernel_flops and not math.isnan(self.flops_compiled):
            out.append(f"{self.kernel_flops / self.flops_compiled:.1%} of the FLOPs counted by hand inside the "
                       "splash attention kernel (cost analysis reads a custom call as zero)")
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"hbm_fraction": self.hbm_fraction, "flops_ratio": self.flops_ratio,
                                           "flops_vs_expected": self.flops_vs_expected, "flops_ok": self.flops_ok}


def suggestions(report: CompileReport, config, topo: Topology) -> list[str]:
    """What to change when a rung does not fit, most direct first, with the per-device figures that argue it."""
    out = []
    state = report.params + report.opt_state
    batch, dp, tp = config.train.global_batch, report.mesh["data"] * report.mesh["fsdp"], report.mesh["tensor"]
    bigger = next_topology(topo)
    if bigger is not None and batch % bigger.hosts:  # the trainer gives every host whole rows of the batch
        bigger = None
    fills = -1 in (config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    if bigger is not None and fills and batch % (2 * dp) == 0:
        # State and batch are both split over data x fsdp: doubling the chips roughly halves both.
        out.append(f"use {bigger} (about {report.total / 2 / GiB:.1f} GiB per device expected; "
                   f"`ladder compile PLAN --topology {bigger.accelerator_type}` to confirm)")
    elif bigger is not None and _divides_heads_and_mlp(config, 2 * tp):
        # The batch cannot split further (or the mesh is pinned): the extra chips go to tensor parallelism.
        out.append(f"use {bigger} with --config.mesh.tensor={2 * tp} (the batch of {batch} splits over at most "
                   f"{dp} data x fsdp devices here; tensor parallelism splits weights and activations, the saved "
                   f"layer inputs over the sequence; `ladder compile` to confirm)")
    if (config.mesh.data != 1 or config.mesh.tensor != 1) and batch % topo.chips_per_slice == 0:
        out.append(f"shard state over every chip: --config.mesh.data=1 --config.mesh.fsdp=-1 --config.mesh.tensor=1 "
                   f"(parameters + optimizer now {state / GiB:.1f} GiB per device)")
    if config.model.remat != "full":
        out.append(f"rematerialise each layer in the backward pass: --config.model.remat=full "
                   f"(temporaries now {report.temp / GiB:.1f} GiB per device; costs ~1/3 more FLOPs)")
    if config.model.dtype == "float32":
        out.append("compute in bfloat16 (master weights stay float32): --config.model.dtype=bfloat16")
    rows, mb = batch // dp, config.train.microbatches
    more = [k for k in range(mb + 1, rows + 1) if rows % k == 0] if batch % dp == 0 else []
    if more:
        # Gradient accumulation: activations scale with the rows of one microbatch; the update is the same.
        out.append(f"accumulate gradients over more microbatches: --config.train.microbatches={more[0]} "
                   f"({rows // more[0]} of the {rows} rows per device at a time; the same update, `ladder "
                   f"compile` to confirm)")
    out.append(f"a smaller per-device batch ({batch // dp} sequences now) needs a larger "
               "slice: the global batch is part of the rung's recipe, so change it only by re-planning")
    return out


def _divides_heads_and_mlp(config, tensor: int) -> bool:
    from ladder.arch import arch_of

    arch = arch_of(config)
    return arch.n_heads % tensor == 0 and arch.mlp_hidden % tensor == 0 and arch.padded_vocab % tensor == 0


@dataclasses.dataclass(frozen=True)
class CompileRow:
    """One line of the `ladder compile` table: memory per device in GiB, HBM share, FLOPs ratios."""

    rung: str
    topology: str
    mesh: str  # data/fsdp/tensor
    params_gib: float
    optimizer_gib: float
    temp_gib: float
    total_gib: float
    hbm_gib: float
    hbm_fraction: float
    fits: bool
    vs_6n: float  # compiled FLOPs / (6N + attention); nan when not counted
    vs_expected: float  # compiled FLOPs / expected_flops_per_token (remat included)
    flops_ok: bool | None  # vs_expected inside FLOPS_RATIO_BAND (None: not counted)
    compile_s: float  # memory compile + FLOPs probes
    notes: tuple[str, ...] = ()  # the mesh note, then "suggestion: ..." lines


def compile_rows(reports: list[CompileReport]) -> list[CompileRow]:
    """The table's rows, one per report (what a notebook reads instead of the text)."""
    return [CompileRow(
        rung=r.rung, topology=r.topology, mesh="/".join(str(r.mesh[a]) for a in ("data", "fsdp", "tensor")),
        params_gib=r.params / GiB, optimizer_gib=r.opt_state / GiB, temp_gib=r.temp / GiB, total_gib=r.total / GiB,
        hbm_gib=r.hbm / GiB, hbm_fraction=r.hbm_fraction, fits=r.fits, vs_6n=r.flops_ratio,
        vs_expected=r.flops_vs_expected, flops_ok=r.flops_ok, compile_s=r.compile_s + r.flops_s,
        notes=tuple(r.notes()) + tuple(f"suggestion: {s}" for s in r.suggestions))
        for r in reports]


TABLE_HEADER = (f"{'rung':<16} {'topology':<16} {'mesh d/f/t':<11} {'params':>7} {'optim':>7} {'temp':>7} "
                f"{'total':>7} {'HBM':>5} {'use':>5} {'fits':<4} {'vs 6N':>6} {'vs exp':>7} {'compile s':>9}")


def _ratio(x: float, width: int) -> str:
    """A FLOPs ratio, or '-' when FLOPs were not counted (--no-flops printed 'nan' as if it were a result)."""
    return f"{x:{width}.3f}" if math.isfinite(x) else f"{'-':>{width}}"


def format_rows(rows: list[CompileRow], *, header: bool = True) -> str:
    """A fixed-width table: one line per rung and topology (then its notes), memory in GiB per device.

    `vs 6N` is compiled FLOPs / (6N + attention); `vs exp` divides by expected_flops_per_token instead
    (remat included) and is flagged `!` outside FLOPS_RATIO_BAND. header=False gives the lines of the rows
    alone (`ladder compile` prints the header first and each row as its compile finishes)."""
    lines = [TABLE_HEADER] if header else []
    for r in rows:
        flag = {None: " ", True: " ", False: "!"}[r.flops_ok]
        lines.append(f"{r.rung:<16} {r.topology:<16} {r.mesh:<11} {r.params_gib:7.2f} {r.optimizer_gib:7.2f} "
                     f"{r.temp_gib:7.2f} {r.total_gib:7.2f} {r.hbm_gib:5.0f} {r.hbm_fraction:5.0%} "
                     f"{'yes' if r.fits else 'NO':<4} {_ratio(r.vs_6n, 6)} {_ratio(r.vs_expected, 6)}{flag} "
                     f"{r.compile_s:9.1f}")
        lines += [f"    {note}" for note in r.notes]
    return "\n".join(lines)


def format_reports(reports: list[CompileReport], *, header: bool = True) -> str:
    """format_rows(compile_rows(reports))."""
    return format_rows(compile_rows(reports), header=header)
