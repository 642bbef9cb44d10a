"""`ladder cpt CONFIG [-o DIR] [--config.k=v ...]`: a continual-pretraining study, end to end.

Plans base runs and a CPT grid (every base x domain share r x budget), trains them (resumable: finished runs
are skipped), collects results.csv, fits the D-CPT law (as `ladder fit dcpt --holdout`, rule (a)), trains a
check run at rule (a)'s ratio and writes the compute-effectiveness report. API: ladder.cpt.run_study.
"""

from __future__ import annotations

import json
import sys

from ladder.commands.common import path_arg

TAKES_CONFIG = True
EXAMPLES = """
ladder cpt configs/specialization.py
ladder cpt configs/specialization.py:ci -o /tmp/cpt-ci
ladder cpt configs/specialization.py --config.budgets=[0.5,1,2] --config.check=False
"""


def add_arguments(parser) -> None:
    parser.add_argument("config", help="study config, e.g. configs/specialization.py (or :ci for a tiny one)")
    parser.add_argument("-o", "--out", metavar="DIR", type=path_arg,
                        help="output directory (default: the config's out_dir); "
                        "re-running resumes it")


def run(args) -> int:
    from ladder import cpt
    from ladder.config import load_config, require_kind
    from ladder.errors import TrainingFailed

    cfg = load_config(args.config, args.config_overrides)
    require_kind(cfg, "cpt", args.config)  # a train or run config: say which verb takes it, not "unknown key"
    cpt.check_config(cfg)
    try:
        summary = cpt.run_study(cfg, args.out, log=cpt.main_log)
    except TrainingFailed as e:  # a run diverged: exit 1 like `ladder train`; rerunning resumes the study
        print(f"ladder cpt: failed: {e}", file=sys.stderr)
        return 1
    keys = ("dcpt", "rule_a", "check", "effectiveness", "seconds")
    shown = {k: summary[k] for k in keys if k in summary}
    if "dcpt_positive_share" in summary:  # its R^2 and rule (a); the holdouts and parameters are in study.json
        shown["dcpt_positive_share"] = {k: {"r2": v.get("r2"), "error": v.get("error")} if k != "rule_a" else v
                                        for k, v in summary["dcpt_positive_share"].items()}
    print(json.dumps(shown, indent=1, default=float))
    return 0
