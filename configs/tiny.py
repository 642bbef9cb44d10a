"""The default run: a ~1.1M-parameter OLMo-2-style model that trains to completion on 2 CPU cores in about a
minute (`ladder train configs/tiny.py`). Every key is listed in ladder.train_config.default_config().

Its data are uniform random tokens (`synthetic`: no tokenizer, no files), so the loss settles at ln 259 = 5.557
(chance) by design: this run checks the trainer. For a model that learns, add --config.data.source=embedded."""

from ladder.train_config import default_config


def get_config():
    c = default_config()
    c.name = "tiny"
    # byte tokenizer: 256 + 3 specials; unrolled layers run ~2x faster than scanned ones on CPU (docs/training.md)
    c.model.update(d_model=128, n_layers=4, n_heads=4, vocab_size=259, seq_len=128, scan_layers=False)
    c.data.update(source="synthetic", seed=0)
    c.train.update(global_batch=16, total_steps=200, checkpoint_every=100, log_every=10, eval_steps=[])
    c.optim.update(peak_lr=3e-3, warmup_steps=30, schedule="cosine")
    return c
