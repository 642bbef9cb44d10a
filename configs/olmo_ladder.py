"""The published ladder (Bhagia et al. 2024) for the 7B-4T and 13B-5T targets, on Cloud TPU.

16 rungs (190M/370M/760M/1.3B x 1/2/5/10xC) at 0.92% of the targets' 6ND, launched as one queued-resource
request per rung (spot capacity; the launch watches them: preempted requests are recreated and their rungs
resume, finished ones are deleted). Workers install the package with the gcs and tpu extras whatever the
requirement says, in a uv-made Python 3.11 venv. Rehearse first (docs/cloud-tpu.md, step 0). Fill in the launch fields (or
override them: --config.launch.project=... --config.launch.run_root=gs://BUCKET/ladder) and the data
location, then `ladder run configs/olmo_ladder.py --dry-run` prints every command; docs/cloud-tpu.md is the
step-by-step. Re-running `ladder run` collects, predicts and reports once the rungs are done.
"""

from ladder.run_config import default_config


def get_config():
    c = default_config()
    c.name = "olmo-ladder"
    c.out_dir = "runs/olmo-ladder"
    c.plan.update(targets=["7b-4t", "13b-5t"], preset="olmo-ladder")
    c.train_overrides = [
        # Pre-tokenized once (docs/data.md): ladder data tokenize c4/en:3.1.0 --data-dir gs://.../tensorflow_datasets
        # --tokenizer gs://my-bucket/dolma2/tokenizer.json -o gs://my-bucket/tokens/c4-train (and --split validation).
        "data.source=tokens", "data.path=gs://my-bucket/tokens/c4-{split}",
        "data.tokenizer=gs://my-bucket/dolma2/tokenizer.json",
        "eval.tasks=arc_easy,arc_challenge,hellaswag,piqa,openbookqa,boolq",
        "eval.tfds_data_dir=gs://my-bucket/tensorflow_datasets", "eval.k_shot=5",
    ]
    # chip: the plan's (the OLMo family plans on v5p), stated here so `ladder run` and `ladder launch` agree.
    c.launch.update(backend="queued-resources", run_root="gs://my-bucket/ladder/olmo", chip="v5p",
                    project="my-project", zone="us-east5-a", package="ladder @ git+https://github.com/ORG/ladder",
                    spot=True)
    c.predict.update(method="ensemble", bootstrap=1000)
    c.self_check.update(enabled=False)  # the targets are the check: compare with the real 7B/13B runs
    return c
