"""The `ladder run` config: every key it has (`default_config`, which configs/*.py start from) and the checks
`validate` makes before any rung trains, apart from the stages that read them so a config file imports no
trainer or launcher code."""

from __future__ import annotations

import ml_collections

from ladder.errors import require


def validate(cfg) -> None:
    """A `ladder run` config: its kind first (a train config given here is one line, not an AttributeError),
    then its keys, types and values."""
    from ladder.config import require_kind
    from ladder.config_checks import check_known_keys, check_read_fields

    require_kind(cfg, "run", "this config")
    check_known_keys(cfg, default_config())
    from ladder.launch import BACKENDS, RUN_LAUNCH_READERS

    *others, last = BACKENDS
    require(cfg.launch.backend in BACKENDS, "launch.backend", f"unknown backend {cfg.launch.backend!r}",
            f"choose {', '.join(others)} or {last}")
    check_read_fields(cfg.launch, default_config().launch, RUN_LAUNCH_READERS, cfg.launch.backend, "launch",
                      "launch.backend")
    # the predict stage's values, checked as `ladder predict` checks its options, before any rung trains (a seed of
    # -1 failed after every rung had trained; a bootstrap of 10^9 had no cap here)
    from ladder.laws import MAX_BOOTSTRAP
    from ladder.laws.taskfit import METHODS

    require(0 <= cfg.predict.bootstrap <= MAX_BOOTSTRAP, "predict.bootstrap", f"{cfg.predict.bootstrap} is outside "
            f"[0, {MAX_BOOTSTRAP:,}]", "use e.g. 200")
    require(cfg.predict.seed >= 0, "predict.seed", f"{cfg.predict.seed} is negative", "use a whole number >= 0")

    methods = ("ensemble", "auto", *METHODS)
    require(cfg.predict.method in methods, "predict.method", f"unknown method {cfg.predict.method!r}",
            f"choose one of {', '.join(methods)}")
    require(cfg.launch.parallel >= 1, "launch.parallel", "must be >= 1", "use 1 on a small CPU machine")
    for item in cfg.train_overrides:
        require("=" in item, "train_overrides", f"{item!r} is not KEY=VALUE", "write e.g. 'eval.tasks=embedded'")


def default_config() -> ml_collections.ConfigDict:
    """Every key a `ladder run` config has (configs/smoke.py is the embedded default)."""
    c = ml_collections.ConfigDict()
    c.name = "run"
    c.out_dir = "runs/run"
    # plan: targets (preset names or SIZE-TOKENS), a ladder preset and/or explicit sizes and multiples, or a
    # compute fraction (0 = the preset's own sizes); eval_fractions: where rungs are evaluated ([] = the family's);
    # skip: rung names (e.g. "236k-1xC") left out of the sizes x multiples grid
    c.plan = dict(targets=[], preset="", fraction=0.0, sizes=[], multiples=[], seed=0, eval_fractions=[], skip=[])
    # train-config overrides for every rung, "key=value" as after --config. (eval.tasks turns evaluation on)
    c.train_overrides = ["eval.tasks=embedded"]
    c.launch = dict(backend="local", run_root="", parallel=1, max_attempts=3, stall_minutes=60.0, chip="v5p",
                    devices=[], project="", zone="", package="", image="", cluster="", spot=False)
    c.predict = dict(method="ensemble", bootstrap=200, seed=0)  # docs/laws.md, "The default"
    # train a model larger than every rung (size, Chinchilla multiple) and check the prediction against it
    c.self_check = dict(enabled=True, size="", multiple=0.5)
    return c

