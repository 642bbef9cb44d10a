"""TensorBoard for a whole ladder: train and eval scalars over steps and over tokens (ladder.metrics)."""

from __future__ import annotations

import struct
from pathlib import Path

from tensorboardX.proto import event_pb2

from ladder import metrics


def scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a tb/ directory's event files (TFRecord framing: length, crc, data, crc)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(tb_dir.iterdir()):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, round(v.simple_value, 6)))
    return out


def test_train_and_eval_scalars_over_steps_and_tokens(tmp_path):
    writer = metrics.MetricsWriter(tmp_path, total_steps=10, stream=open("/dev/null", "w"))
    writer.write(dict(step=5, loss=3.5, z_loss=0.1, grad_norm=1.0, lr=1e-3, tokens=5120, tokens_per_s=900.0,
                      mfu=0.25, time=0.0), eta_s=10.0)
    writer.close()
    rows = [dict(run="r", n=1, d=5120, step=5, task="arc_easy", loss=1.25, acc=0.5, lm_loss=2.75),
            dict(run="r", n=1, d=5120, step=5, task="piqa", loss=0.75, acc=0.625, lm_loss=2.75)]
    metrics.log_eval(tmp_path, 5, 5120, rows)
    got = scalars(tmp_path / "tb")
    assert got["train/loss"] == [(5, 3.5)] and got["tokens/train/loss"] == [(5120, 3.5)]
    assert got["train/tokens_per_s"] == [(5, 900.0)] and got["tokens/train/mfu"] == [(5120, 0.25)]
    assert "train/tokens" not in got  # the axis, not a curve
    assert got["eval/arc_easy/acc"] == [(5, 0.5)] and got["tokens/eval/piqa/loss"] == [(5120, 0.75)]
    assert got["eval/lm_loss"] == [(5, 2.75)] and got["tokens/eval/lm_loss"] == [(5120, 2.75)]
