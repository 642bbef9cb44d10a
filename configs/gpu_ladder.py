"""A ladder sized for one 8-GPU machine: its 1% ladder for a 7B-parameter, 1T-token target.

The planner picks sizes and Chinchilla multiples for the budget (--config.plan.fraction); rungs run on this
machine with the local backend, one rung per GPU (`launch.parallel` = 8, CUDA_VISIBLE_DEVICES split by
`launch.devices`). Point the data at a tfds dataset built on local disk. `--dry-run` prints every command.
"""

from ladder.run_config import default_config


def get_config():
    c = default_config()
    c.name = "gpu-ladder"
    c.out_dir = "runs/gpu-ladder"
    c.plan.update(targets=["7b-1t"], fraction=0.01)
    c.train_overrides = [
        # Tokenized once with all cores (docs/data.md): ladder data tokenize c4/en:3.1.0 --data-dir
        # /data/tensorflow_datasets --tokenizer /data/dolma2/tokenizer.json -o /data/tokens/c4-train (+ --split validation)
        "model.dtype=bfloat16", "data.source=tokens", "data.path=/data/tokens/c4-{split}",
        "data.tokenizer=/data/dolma2/tokenizer.json", "eval.tasks=arc_easy,arc_challenge,hellaswag,piqa",
        "eval.tfds_data_dir=/data/tensorflow_datasets", "eval.k_shot=5",
    ]
    # (no launch.chip: the local backend reads none; chip="h100" here was ignored without a word)
    c.launch.update(backend="local", parallel=8, devices=[str(i) for i in range(8)])
    c.self_check.update(enabled=False)
    return c
