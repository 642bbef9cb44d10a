"""The smoke-scale specialization study (`ladder cpt configs/specialization.py`): general = prose + code,
domain = legal (the embedded corpus), on 2 shared CPU cores in about 20-25 minutes.

Base runs: the planner's 45k/93k/160k/250k-parameter byte-level models at 0.5x Chinchilla (10 tokens per
parameter) on general data. CPT runs: each base's final checkpoint with its Adam state, continued at 9 domain
shares r x 3 budgets (0.5, 1, 2 tokens per parameter: past the re-warmup's stability gap) with a re-warmup
and cosine decay at half the base's peak LR. Then the D-CPT fit (published form on every point, and on
own-data share > 0) with held-out checks, rule (a) at T = 3% checked by a run, and the compute-effectiveness
report. Measured figures: docs/specialization.md, "Smoke study".

Variant `:ci` (tests/test_cpt_study.py): 2 sizes, 3 ratios, 2 budgets, tiny base runs (46 CPU-s; 3 minutes
wall at load 11).
Variant `:measure`: domain scidocs, 3 sizes at 0.25x Chinchilla, 3 shares x 2 budgets + general CPT at 16x
and 64x the smaller budget, legal and notices as cross domains: the split law against its baselines, the
compute ratio with intervals and the cross-domain hold-out (docs/specialization.md, "Measured study").
"""

from ladder.cpt import default_config


def get_config(arg=None):
    c = default_config()
    if arg == "ci":
        c.name, c.out_dir = "specialization-ci", "runs/specialization-ci"
        c.base.update(sizes=["45k", "93k"], multiple=0.1)
        c.ratios = [0.0, 0.5, 1.0]
        c.budgets = [0.25, 0.5]
        c.train_overrides = c.train_overrides + ["eval.n_questions=8", "eval.lm_loss_batches=2"]
        c.fit.update(starts=8)
    elif arg == "measure":
        # The measured study (docs/specialization.md, "Measured study"): domain scidocs (general CPT on prose +
        # code transfers to it, so longer general runs reach the domain runs' loss), 3 sizes, 3 shares x 2
        # budgets; legal and notices get the same r > 0 runs at 2 sizes (cross-domain D-CPT law held out); general CPT
        # at 16x and 64x the smaller domain budget (the compute ratio interpolated). Sized for a loaded 2-core
        # machine; exam accuracy on 40 questions (these runs are about losses).
        c.name, c.out_dir = "specialization-measure", "runs/specialization-measure"
        c.domain = "scidocs"
        c.cross_domains, c.cross_domain_sizes = ["legal", "notices"], ["45k", "93k"]
        c.base.update(sizes=["45k", "93k", "160k"], multiple=0.25)
        c.ratios = [0.0, 0.5, 1.0]
        c.budgets = [0.25, 0.5]
        c.general_budgets = [4.0, 16.0]
        c.train_overrides = [o for o in c.train_overrides if not o.startswith(("eval.tasks=", "eval.n_questions="))]
        c.train_overrides += ["eval.tasks=scidocs_continuation", "eval.n_questions=40"]
        c.fit.update(starts=8)
        c.check = False
    elif arg:
        raise ValueError(f"configs/specialization.py: unknown variant {arg!r}; use no variant, :ci or :measure")
    return c
