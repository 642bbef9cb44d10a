"""Preemption at a step boundary: a signal (SIGTERM from a preempted VM, Ctrl-C, a closed terminal's SIGHUP) or a
closed console asks the trainer to save the step it has just finished and stop, so a resume loses nothing. An
evaluation under way stops between two batches (one process), so the stop is not held up by a long evaluation;
the resume redoes that evaluation. docs/training.md, "Preemption"."""

from __future__ import annotations

import signal

import jax


class EvaluationInterrupted(BaseException):
    """Raised by an interruptible logits function between evaluation batches once a stop was requested. A
    BaseException like KeyboardInterrupt: an evaluator's `except Exception` must not swallow it and go on
    scoring (each later batch would raise again)."""


class Preemption:
    """SIGTERM or SIGINT (Ctrl-C) -> save at the next step boundary and stop; a second SIGINT stops at once.
    Multi-process runs ask JAX's preemption service, which agrees on one step across processes (a save called
    on one host only would hang the others)."""

    # SIGHUP: the terminal the run was started from closed (an ssh session dropped); it ended the run without a
    # save, losing every step since the last checkpoint.
    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self):
        self.flag = False
        self.signal_name = "SIGTERM"
        self.multi = jax.process_count() > 1
        self.previous = {}
        if not self.multi:
            try:
                for sig in self.SIGNALS:
                    self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handler, no preemption saves
                self.previous = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.flag:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait for the save
        self.flag = True
        self.signal_name = signal.Signals(signum).name

    def request(self, why: str) -> None:
        """Stop as a signal would (one process): the progress display's console is gone (MetricsWriter). Several
        processes train on without it: a save on one alone would hang the others."""
        if not self.multi and not self.flag:
            self.flag, self.signal_name = True, why

    def reached(self, step: int) -> bool:
        if not self.multi:
            return self.flag
        from jax.experimental import multihost_utils

        try:
            return multihost_utils.reached_preemption_sync_point(step)
        except RuntimeError:
            return False

    def interruptible(self, logits_fn):
        """`logits_fn` that raises EvaluationInterrupted before a batch once a stop was requested, so an
        evaluation ends within one batch of the signal. One process only: several must agree on the step they
        stop at (`reached`, at step boundaries), so there an evaluation runs to its end before the save."""
        if self.multi:
            return logits_fn

        def checked(*args, **kwargs):
            if self.flag:
                raise EvaluationInterrupted
            return logits_fn(*args, **kwargs)

        return checked

    def requested(self) -> bool:
        """A stop was requested (one process: the flag; several processes learn it only at `reached`)."""
        return self.flag and not self.multi

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
