"""The embedded default (README's main command): a tiny target and its ~1% ladder, on CPU, offline.

Target `smoke-target` (2.1M parameters, 58M tokens; byte-level vocabulary) is predicted from a 13-rung ladder
over five sizes, 8.2x apart (29k/45k/93k/160k x 0.25/0.5/1 Chinchilla multiples, and 236k at 0.5xC) that spends
1.5% of its compute, trained on the embedded corpus and evaluated on the embedded tasks at 6 points per rung.
The target itself would take hours on 2 CPU cores, so the self-check trains a 333k-parameter model (the
ladder's shape, 1.4x the largest rung in N and in D, at 0.5xC) and checks the prediction on it.

Variant `configs/smoke.py:quick` is the same pipeline on a few-minute budget (CI's end-to-end test).
"""

from ladder.run_config import default_config


def get_config(arg=None):
    c = default_config()
    c.name = "smoke"
    c.out_dir = "runs/smoke"
    # Five sizes over 8.2x (issue #13 asks >= 8x): the 4 x 3 grid plus the 236k size at 0.5xC only (its 0.25xC sits off the law, its
    # 1xC alone would cost a quarter of the job). Evaluated at 0.5 and the last 10% of each rung: the 0.25
    # point moved no self-check number by more than 0.2 points when refitted without it. docs/run.md, "The
    # smoke ladder", has the layouts measured and why.
    c.plan.update(targets=["smoke-target"], preset="", sizes=["29k", "45k", "93k", "160k", "236k"],
                  multiples=[0.25, 0.5, 1], skip=["236k-0.25xC", "236k-1xC"],
                  eval_fractions=[0.5, 0.92, 0.94, 0.96, 0.98, 1])
    c.train_overrides = ["eval.tasks=embedded", "eval.lm_loss_batches=4", "model.scan_layers=False"]
    # two single-rung trainers share 2 cores better than one (bench/summary.py), each on one XLA CPU thread, which
    # the launcher gives parallel trainers (ladder/cpu_threads.py; LADDER_XLA_CPU_THREADS=0 turns it off)
    c.launch.parallel = 2
    c.predict.update(method="ensemble", bootstrap=200)  # docs/laws.md, "The default"
    c.self_check.update(enabled=True, size="330k", multiple=0.5)
    if arg == "quick":
        c.name, c.out_dir = "smoke-quick", "runs/smoke-quick"
        # The main job's pipeline on six rungs (the fewest the ensemble's back-tests fit: step 1 has 5 parameters),
        # three evaluations each and a 236k check (the family's shape: 80 wide, five 16-wide heads): every stage
        # and file of the main job; the numbers mean nothing.
        c.plan.update(sizes=["45k", "93k", "160k"], multiples=[0.1, 0.2], skip=[], eval_fractions=[0.25, 0.5, 1])
        c.train_overrides = c.train_overrides + ["eval.n_questions=60"]
        c.predict.update(bootstrap=20)
        c.self_check.update(size="236k", multiple=0.05)
    elif arg:
        raise ValueError(f"configs/smoke.py: unknown variant {arg!r}; use configs/smoke.py or configs/smoke.py:quick")
    return c
