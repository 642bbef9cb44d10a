"""A train config: every key with its default, the plan-rung mapping, and the checks that run before anything
is compiled or written (each failure one line naming the field and the fix: LadderError, exit 2). The checks
that need the mesh and the device's memory are in ladder/device_checks.py; those of the run directory (writable,
its entries of the right kind, not inside the corpus) in ladder/rundir.py, which owns its layout.

No JAX here: the CLI, the planner and the launcher can build and check configs without importing it.
"""

from __future__ import annotations

import hashlib
import math

import ml_collections

from ladder import arch as arch_lib
from ladder.config import apply_overrides, set_path, to_json
from ladder.errors import LadderError, require, require_path_name
from ladder.config_checks import MAX_QUESTIONS, check_known_keys

DTYPES = ("float32", "bfloat16")
REMATS = ("none", "save_dots", "full")  # ladder.model.REMAT_POLICIES, least recompute first
ATTENTIONS = ("auto", "xla", "splash", "cudnn")  # ladder.attention.IMPLEMENTATIONS
# Values older plans and configs carry: model.remat was a bool (True = recompute each whole layer).
LEGACY_VALUES = {"model.remat": {True: "full", False: "none"}}
SCHEDULES = ("cosine", "wsd")


def default_config() -> ml_collections.ConfigDict:
    """Every key a train config has. Config files start from this; unknown override keys are errors."""
    c = ml_collections.ConfigDict()
    c.name = "run"
    c.model = dict(d_model=128, n_layers=4, n_heads=4, mlp_hidden=0, vocab_size=259, seq_len=128,
                   dtype="float32", param_dtype="float32", rope_theta=500_000.0, norm_eps=1e-6, init_std=0.02,
                   scan_layers=True, remat="none", attention="auto", loss_chunk=256)
    # Passed to ladder.data.make_source with vocab_size = model.vocab_size; fields are documented in docs/data.md.
    c.data = dict(source="synthetic", seed=0, domains="prose,code,legal", weights="", files="", name="",
                  text_field="text", tfds_name="", data_dir="", try_gcs=False, download=False, max_documents=0,
                  mixture=None, split="train", tokenizer="byte", spm_model="", segment_ids=True, cache_dir="", path="")
    c.train = dict(global_batch=16, total_steps=100, seed=0, z_loss=1e-4, eval_steps=[], checkpoint_steps=[],
                   checkpoint_every=1000, keep_checkpoints=2, async_checkpoints=True, log_every=10,
                   mfu_accounting="6n", divergence_margin=2.0, microbatches=1)
    c.optim = dict(peak_lr=3e-3, final_lr_ratio=0.1, warmup_steps=10, schedule="cosine", decay_fraction=0.2,
                   beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0)
    # Evaluation at train.eval_steps and at the end (docs/tasks.md): tasks as ladder.tasks.load_tasks reads
    # them ("" = no evaluation), and the held-out LM loss over lm_loss_batches validation batches of the
    # training data (bits per token; per byte with the byte tokenizer), also per domain in lm_loss_domains.
    # k_shot: -1 = each task's default (5 for the reference ladder's catalog tasks, 0 embedded); `task:k` in
    # tasks sets one task's k.
    # batch_size: rows per evaluation batch (0 = train.global_batch); a fixed value keeps the held-out sets
    # the same across rungs whose training batches differ.
    c.eval = dict(tasks="", k_shot=-1, n_questions=300, max_questions=0, seed=0, tfds_data_dir="", try_gcs=False,
                  download=False, lm_loss_batches=0, lm_loss_domains="", batch_size=0)
    # Continual pretraining (docs/training.md): start from the checkpoint of another run (its run directory;
    # step -1 = its latest). Weights only by default: fresh optimizer state, step 0, this config's schedule.
    c.init = dict(from_run="", step=-1, restore_optimizer=False)
    # Specialization mixture over embedded domains (docs/specialization.md): with r in [0, 1] the run trains on
    # `general` (weight 1 - r, its domains in natural proportion) + `domain` (weight r) and its evaluation adds
    # general_loss, domain_loss (bits per byte, validation split), r, d_cpt, base_run, kind. r = -1: off.
    c.mix = dict(general="prose,code", domain="legal", r=-1.0)
    # Sizes within one slice (one may be -1 = fill); dcn_data > 1: the data axis also spans that many slices.
    c.mesh = dict(data=1, fsdp=-1, tensor=1, dcn_data=1)
    # initialize=True with no coordinator: jax.distributed.initialize() reads the TPU VM environment.
    # timeout_s: every process must join within it; heartbeat_timeout_s: a peer silent this long is dead (and
    # the shutdown barrier waits no longer for one); ladder/distributed.py bounds each with one line.
    c.distributed = dict(initialize=False, coordinator="", num_processes=0, process_id=-1, timeout_s=300,
                         heartbeat_timeout_s=100)
    return c


RUNG_KEYS = {  # plan rung key -> train config key
    "d_model": "model.d_model", "n_layers": "model.n_layers", "n_heads": "model.n_heads",
    "mlp_hidden": "model.mlp_hidden", "vocab_size": "model.vocab_size", "seq_len": "model.seq_len",
    "batch_sequences": "train.global_batch", "total_steps": "train.total_steps", "seed": "train.seed",
    "z_loss": "train.z_loss", "eval_steps": "train.eval_steps", "checkpoint_steps": "train.checkpoint_steps",
    "peak_lr": "optim.peak_lr", "final_lr_ratio": "optim.final_lr_ratio", "warmup_steps": "optim.warmup_steps",
    "schedule": "optim.schedule", "beta1": "optim.beta1", "beta2": "optim.beta2", "eps": "optim.eps",
    "weight_decay": "optim.weight_decay", "clip": "optim.clip",
}
# The memory recipe `ladder plan --out` stamps on each rung (ladder.plan.dryrun.attach_recipes: fit_recipe on
# the plan's chip). Optional: a rung without them (an older plan) keeps the defaults. They are more specific
# than the plan's family defaults, so they win over those; a --config override wins over both.
RECIPE_KEYS = {"remat": "model.remat", "microbatches": "train.microbatches"}


def config_from_rung(rung: dict, defaults: dict | None = None) -> ml_collections.ConfigDict:
    """A plan rung (plus the plan's dotted-key defaults, then the rung's memory recipe) -> a train config."""
    cfg = default_config()
    cfg.name = rung["name"]
    for key, path in RUNG_KEYS.items():
        set_path(cfg, path, rung[key])
    cfg.data.seed = rung["seed"]
    for path, value in (defaults or {}).items():
        if isinstance(value, bool) and path in LEGACY_VALUES:
            value = LEGACY_VALUES[path][value]
        set_path(cfg, path, value)
    for key, path in RECIPE_KEYS.items():
        if key in rung:
            set_path(cfg, path, rung[key])
    return cfg


def resolve_rung(plan: dict | None, rung: str | dict, overrides=()) -> tuple[ml_collections.ConfigDict, str]:
    """(train config, config_hash) a plan rung trains with: the rung's keys, the plan's dotted-key defaults,
    then `overrides` ("key=value", as after --config.). The one place a rung becomes a config, so the
    launcher's ownership check, the compile check, `ladder train --plan` and the CPT study cannot drift apart.

    `rung` is a name in plan["rungs"] or a rung dict (a target, or a CPT grid rung with no plan: plan=None).
    The hash is the trainer's (config_hash after resolve_vocab, as train() does), which it records in
    config.json; with model.vocab_size = 0 that reads the tokenizer or the token store's manifest."""
    plan = plan or {}
    if isinstance(rung, str):
        by_name = {r["name"]: r for r in plan.get("rungs", ())}
        if rung not in by_name:
            raise LadderError(f"--rung: {rung!r} is not in the plan; rungs: {', '.join(by_name)}")
        rung = by_name[rung]
    where = f"plan rung {rung.get('name')!r}"
    try:
        config = config_from_rung(rung, plan.get("defaults") or {})
    except LadderError as e:  # the plan's value, not a --config override: name the rung
        raise LadderError(f"{where}: {str(e).removeprefix('--config.')}") from None
    config = apply_overrides(config, overrides)
    resolve_vocab(config)
    try:  # checked here, where every consumer of a rung passes (launch --dry-run included), not at its first step
        validate(config, data=False)
    except LadderError as e:
        raise LadderError(f"{where}{' with the --config overrides' if overrides else ''}: {e}") from None
    return config, config_hash(config)


def resolve_vocab(config) -> None:
    """model.vocab_size = 0 means "the data's": the tokenizer's, or a token store's manifest (docs/data.md)."""
    if config.model.vocab_size == 0 and config.data.source != "synthetic":
        from ladder.data.pipeline import vocab_size

        config.model.vocab_size = vocab_size(config.data)


def data_config(config) -> ml_collections.ConfigDict:
    """The data config the run reads: `data` with the model's vocab_size, or the `mix` mixture when mix.r >= 0."""
    data = ml_collections.ConfigDict(config.data)
    data.vocab_size = config.model.vocab_size
    mix = config.mix
    if mix.r >= 0:
        with data.ignore_type():
            data.update(source="mixture", weights="", mixture={
                "general": {"weight": 1.0 - mix.r, "source": "embedded", "domains": mix.general},
                "domain": {"weight": float(mix.r), "source": "embedded", "domains": mix.domain}})
    return data


# Model keys a continued run must share with its base (the rest are compute choices: dtype, remat, seq_len
# with RoPE positions, and init_std, which a restored model never uses).
INIT_MODEL_KEYS = ("d_model", "n_layers", "n_heads", "mlp_hidden", "vocab_size", "param_dtype", "rope_theta",
                   "norm_eps", "scan_layers")


def check_base_architecture(config, base_config: dict, base_dir) -> None:
    """LadderError (field init.from_run) listing every model key where the base run's config.json differs."""
    base_model = base_config.get("model", {})
    diff = [f"model.{k}={config.model[k]!r} vs {base_model.get(k)!r}" for k in INIT_MODEL_KEYS
            if base_model.get(k) != config.model[k]]
    require(not diff, "init.from_run", f"the base run {base_dir} has another architecture: {'; '.join(diff)}",
            "continue from a run of the same architecture, or set these model keys to the base's values")


def config_hash(config) -> str:
    """sha256 of the canonical config JSON without the `distributed` section (it differs per process)."""
    cfg = ml_collections.ConfigDict(config)
    del cfg["distributed"]
    return hashlib.sha256(to_json(cfg).encode()).hexdigest()


def config_changes(saved: dict, config, limit: int = 3) -> str:
    """The fields in which `config` differs from a run directory's saved config.json, as
    "optim.peak_lr 0.003 -> 0.01, ..." (the `distributed` section and config_hash left out, as config_hash
    leaves them): "config_hash differs" alone left the user to diff two JSON files."""
    import json

    from ladder.cpu_threads import RECORD as XLA_CPU_THREADS

    def flat(d, prefix=""):
        out = {}
        for k, v in (d.items() if isinstance(d, dict) else ()):
            if prefix == "" and k in ("distributed", "config_hash", XLA_CPU_THREADS):  # the last: a run fact
                continue
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    before, now = flat(saved), flat(json.loads(to_json(ml_collections.ConfigDict(config))))
    keys = sorted(k for k in set(before) | set(now) if before.get(k, "<absent>") != now.get(k, "<absent>"))
    shown = [f"{k} {before.get(k, '<absent>')!r} -> {now.get(k, '<absent>')!r}" for k in keys[:limit]]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# ---------------------------------------------------------------------------------------------- validation


def validate(config, *, data: bool = True) -> None:
    """Checks that need no devices. Each failure is one line naming the field and the fix. data=False skips the
    one check that reads the data's tokenizer (resolve_rung on a launching machine that may not hold it)."""
    from ladder.config import require_kind

    require_kind(config, "train", "this config")
    check_known_keys(config, default_config())
    require_path_name(config.name, "name")  # the default run directory is runs/<name>
    _check_positive(config)
    _check_model(config.model)
    _check_optimization(config.train, config.optim)
    _check_counts_and_mesh(config)
    _check_steps(config.train)
    _check_data_and_eval(config)
    _check_distributed(config.distributed)
    if data and config.data.source != "synthetic":
        from ladder.data.pipeline import vocab_size

        need, have = vocab_size(config.data), config.model.vocab_size
        require(need <= have, "model.vocab_size", f"{have} is smaller than the tokenizer's {need}",
                f"set model.vocab_size={need}")


def _check_distributed(d) -> None:
    """Peer settings JAX would ignore: a coordinator, process count or id without initialize (one process
    trains alone), or a count or id without a coordinator (initialize() then reads them from the TPU VM)."""
    peers = d.num_processes != 0 or d.process_id != -1
    require(d.initialize or not (d.coordinator or peers), "distributed.coordinator",
            "coordinator / num_processes / process_id are set but distributed.initialize is False, so they would "
            "be ignored", "pass --coordinator, --num-processes and --process-id to `ladder train`")
    require(not d.initialize or d.coordinator or not peers, "distributed.num_processes",
            "num_processes / process_id are set without a coordinator, so they would be ignored (JAX reads the "
            "TPU environment)", "add --coordinator HOST:PORT, or drop them")


def _check_positive(config) -> None:
    """Sizes, counts and rates that only make sense above zero."""
    for sec, keys in (("model", ("d_model", "n_layers", "n_heads", "vocab_size", "seq_len", "rope_theta",
                                 "norm_eps", "init_std")),
                      ("train", ("global_batch", "total_steps", "keep_checkpoints", "log_every")),
                      ("optim", ("peak_lr",)), ("eval", ("n_questions",)),
                      ("distributed", ("timeout_s", "heartbeat_timeout_s"))):
        for key in keys:
            value = config[sec][key]
            require(value > 0, f"{sec}.{key}", f"must be positive, got {value}", "set a positive value")


def _check_model(m) -> None:
    """The architecture: shapes RoPE and the heads can use, known dtypes, remat policies and attentions."""
    require(m.vocab_size >= 2, "model.vocab_size", f"{m.vocab_size} leaves nothing to predict (a 1-token language)",
            "use the tokenizer's vocabulary, e.g. 259 for bytes")
    require(m.mlp_hidden >= 0, "model.mlp_hidden", f"must be >= 0, got {m.mlp_hidden}", "use 0 for 4*d_model")
    require(m.d_model % m.n_heads == 0, "model.n_heads", f"{m.n_heads} heads do not divide d_model={m.d_model}",
            "choose n_heads dividing d_model")
    require((m.d_model // m.n_heads) % 2 == 0, "model.n_heads", f"head width {m.d_model // m.n_heads} is odd",
            "RoPE needs an even head width; change n_heads")
    for key in ("dtype", "param_dtype"):
        require(m[key] in DTYPES, f"model.{key}", f"unknown dtype {m[key]!r}", f"use one of {', '.join(DTYPES)}")
    require(m.remat in REMATS, "model.remat", f"unknown remat policy {m.remat!r}",
            f"use one of {', '.join(REMATS)} (least to most recompute)")
    require(m.attention in ATTENTIONS, "model.attention", f"unknown attention {m.attention!r}",
            f"use one of {', '.join(ATTENTIONS)}")
    require(m.attention != "splash" or m.seq_len % 128 == 0, "model.attention",
            f"splash needs seq_len divisible by 128, got {m.seq_len}", "use attention=xla or auto")
    require(m.loss_chunk >= 0, "model.loss_chunk", f"must be >= 0, got {m.loss_chunk}", "use 0 for the whole sequence")


def _check_optimization(t, o) -> None:
    """Microbatching, the LR schedule, AdamW and the loss terms."""
    require(t.microbatches >= 1 and t.global_batch % t.microbatches == 0, "train.microbatches",
            f"{t.microbatches} does not split global_batch={t.global_batch}", "use a divisor of the global batch")
    require(o.schedule in SCHEDULES, "optim.schedule", f"unknown schedule {o.schedule!r}",
            f"use one of {', '.join(SCHEDULES)}")
    require(0 <= o.warmup_steps <= t.total_steps, "optim.warmup_steps",
            f"{o.warmup_steps} is outside [0, total_steps={t.total_steps}]", "lower warmup_steps")
    require(0 <= o.final_lr_ratio <= 1, "optim.final_lr_ratio", f"{o.final_lr_ratio} is outside [0, 1]",
            "use e.g. 0.1")
    require(0 <= o.decay_fraction <= 1, "optim.decay_fraction", f"{o.decay_fraction} is outside [0, 1]",
            "use e.g. 0.2")
    for key in ("beta1", "beta2"):
        require(0 <= o[key] < 1, f"optim.{key}", f"{o[key]} is outside [0, 1)", "use e.g. 0.9 / 0.95")
    require(o.eps > 0, "optim.eps", f"must be positive, got {o.eps}", "use e.g. 1e-8")
    for key in ("weight_decay", "clip"):
        require(o[key] >= 0, f"optim.{key}", f"must be >= 0, got {o[key]}", "use 0 to turn it off")
    require(t.z_loss >= 0, "train.z_loss", f"must be >= 0, got {t.z_loss}", "use 0 to turn it off")
    require(t.divergence_margin >= 0, "train.divergence_margin", f"must be >= 0, got {t.divergence_margin}",
            "use e.g. 2.0 (nats above the first step's loss), or 0 to check only for NaN/Inf")


def _check_counts_and_mesh(config) -> None:
    """Seeds and caps (0 allowed) and the mesh axes (-1: fill with the devices left over)."""
    t = config.train
    for field, value in (("train.seed", t.seed), ("data.seed", config.data.seed), ("eval.seed", config.eval.seed),
                         ("data.max_documents", config.data.max_documents),
                         ("eval.max_questions", config.eval.max_questions),
                         ("eval.lm_loss_batches", config.eval.lm_loss_batches)):
        require(value >= 0, field, f"must be >= 0, got {value}", "use 0 or a positive value")
    require(config.eval.k_shot >= -1, "eval.k_shot", f"must be >= -1, got {config.eval.k_shot}",
            "use -1 (each task's default: 5 catalog, 0 embedded), 0 or a positive value")
    for key in ("data", "fsdp", "tensor"):  # one may be -1: the devices left over (ladder.sharding.make_mesh)
        require(config.mesh[key] == -1 or config.mesh[key] >= 1, f"mesh.{key}", f"must be -1 (fill) or >= 1, "
                f"got {config.mesh[key]}", "use 1 for no split, or -1 for the devices left over")
    require(config.mesh.dcn_data >= 1, "mesh.dcn_data", f"must be >= 1, got {config.mesh.dcn_data}",
            "set the number of slices (1 for one slice)")


def _check_steps(t) -> None:
    """The steps that save checkpoints and evaluate, and the FLOP count MFU uses."""
    require(t.checkpoint_every >= 0, "train.checkpoint_every", f"must be >= 0, got {t.checkpoint_every}",
            "use 0 for no periodic saves")
    require(t.mfu_accounting in arch_lib.FLOP_COUNTS, "train.mfu_accounting", f"unknown {t.mfu_accounting!r}",
            f"use one of {', '.join(arch_lib.FLOP_COUNTS)}")
    for key in ("eval_steps", "checkpoint_steps"):
        odd = [s for s in t[key] if isinstance(s, bool) or not isinstance(s, (int, float)) or s != int(s)]
        require(not odd, f"train.{key}", f"{odd[0]!r} is not a step (a whole number)" if odd else "",
                "list whole step numbers, e.g. [100, 200]")
        bad = [s for s in t[key] if not 0 < s <= t.total_steps]
        require(not bad, f"train.{key}", f"steps {bad} are outside [1, total_steps={t.total_steps}]",
                "remove them or raise total_steps")


def _check_mixture(components) -> None:
    """data.mixture's components, before any of them is built: a weight "abc" was a ValueError traceback and
    a negative one was refused only after every component was tokenized; a misspelt key in a component
    (`file:`) was dropped without a word, so the component read the parent's value."""
    require(isinstance(components, (dict, ml_collections.ConfigDict)) and len(components) > 0, "data.mixture",
            f"is {components!r}", "give {name: {weight: w, source: ..., <data fields>}, ...}")
    known = (set(default_config().data.keys()) - {"mixture"}) | {"weight"}
    weights = []
    for name, part in components.items():
        field = f"data.mixture.{name}"
        require(isinstance(part, (dict, ml_collections.ConfigDict)), field, f"is {part!r}, not a section",
                "give {weight: w, source: ..., <data fields>}")
        unknown = sorted(set(part.keys()) - known)
        require(not unknown, f"{field}.{unknown[0] if unknown else ''}", "unknown data key",
                f"known keys: weight, {', '.join(sorted(known - {'weight'}))}")
        w = part.get("weight", 1.0)
        require(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0,
                f"{field}.weight", f"{w!r} is not a finite number >= 0", "give the component's share, e.g. 0.8")
        require(part.get("source", "embedded") != "mixture", f"{field}.source", "a component cannot itself be a "
                "mixture", "list its parts as components of this mixture")
        weights.append(w)
    require(sum(weights) > 0, "data.mixture", "every weight is 0", "give at least one component a positive weight")


# Data fields only a corpus reads: with source "synthetic" (uniform random tokens, the default) they were
# ignored without a word (`data.files=...` trained on random tokens). tokenizer / spm_model stay (vocab_size 0
# reads them), and data_dir: launches pass it to every rung of a plan (`--config.data.data_dir=gs://...`).
CORPUS_ONLY = ("domains", "weights", "files", "text_field", "tfds_name", "max_documents", "mixture", "path")


def _check_synthetic_reads_nothing(data) -> None:
    if data.source != "synthetic":
        return
    default = default_config().data
    unread = [k for k in CORPUS_ONLY if data[k] != default[k]]
    require(not unread, f"data.{unread[0] if unread else ''}", "is set but data.source is 'synthetic' (uniform random "
            "tokens), so it would be ignored", "set data.source to the source that reads it (docs/data.md), or drop it")


def _check_data_and_eval(config) -> None:
    """The corpus domains, the evaluation's held-out losses, a continued run's base, and the domain mixture."""
    from ladder.data.pipeline import embedded_domains

    i, mix, e = config.init, config.mix, config.eval
    _check_synthetic_reads_nothing(config.data)
    if config.data.source == "embedded":
        embedded_domains(config.data.domains, "data.domains")
    require(e.tasks or not (e.lm_loss_batches or e.lm_loss_domains), "eval.lm_loss_batches",
            "is set but eval.tasks is empty, so no evaluation runs and no held-out loss is measured",
            "set eval.tasks (e.g. embedded), or leave eval.lm_loss_batches at 0 and eval.lm_loss_domains empty")
    if e.lm_loss_domains:
        embedded_domains(e.lm_loss_domains, "eval.lm_loss_domains")
    require(i.step >= -1, "init.step", f"{i.step} is not a step", "use -1 (the base run's latest) or a saved step")
    for key, unset in (("restore_optimizer", False), ("step", -1)):  # read only with a base run
        require(i.from_run or i[key] == unset, f"init.{key}", "set without init.from_run, so it would be ignored",
                "give init.from_run (the base run's directory)")
    if config.data.source == "mixture":
        _check_mixture(config.data.mixture)
    require(mix.r == -1 or 0 <= mix.r <= 1, "mix.r", f"{mix.r} is outside [0, 1]", "give the domain share, or -1 (off)")
    off = default_config().mix
    require(mix.r >= 0 or (mix.general, mix.domain) == (off.general, off.domain), "mix.general",
            "mix.general / mix.domain are set but mix.r is -1 (off), so they would be ignored",
            "set mix.r to the domain share in [0, 1], or leave them out")
    if mix.r >= 0:
        general, domain = embedded_domains(mix.general, "mix.general"), embedded_domains(mix.domain, "mix.domain")
        require(general and domain and not set(general) & set(domain), "mix.general",
                f"general {general} and domain {domain} must be non-empty and disjoint", "e.g. prose,code and legal")
        require(config.data.source == "embedded", "data.source", f"{config.data.source!r} with mix.r set",
                "mix draws from the embedded domains: set data.source=embedded, or write data.mixture yourself")
        require(not e.tasks or e.lm_loss_batches > 0, "eval.lm_loss_batches", "0 with mix.r set",
                "set it > 0: general_loss and domain_loss are held-out LM losses")
    require(e.batch_size >= 0, "eval.batch_size", f"must be >= 0, got {e.batch_size}", "use 0 for train.global_batch")
    require(e.n_questions <= MAX_QUESTIONS, "eval.n_questions", f"{e.n_questions:,} is more than {MAX_QUESTIONS:,}",
            "use e.g. 300 (questions per embedded task)")
