"""How a ``transformers`` Trainer reports its run: one progress line per tenth of the run inside notebooks (a live
bar floods the kernel's output queue), and the loss log a stage keeps in its record. Shared by every trainer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def in_notebook() -> bool:
    """True inside a Jupyter kernel (papermill, nbval, JupyterLab)."""
    from transformers.utils import is_in_notebook

    return bool(is_in_notebook())


def drop_printer(trainer) -> None:
    """Without a bar the Trainer prints every log dict; the progress lines and the loss log suffice."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def progress_lines(name: str, every: float = 0.1):
    """A Trainer callback printing one progress line per ``every`` of the run (step, loss, elapsed, eta).

    Used instead of the live progress bar inside notebooks: thousands of bar updates overflow the kernel's
    output queue, and nbval then misses the end of the cell.
    """
    import time

    from transformers import TrainerCallback

    class ProgressLines(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.t0, self.next, self.loss = time.perf_counter(), every, float("nan")

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state, control, **kw):
            done = state.global_step / max(state.max_steps, 1)
            if done + 1e-9 >= self.next or state.global_step == state.max_steps:
                elapsed = time.perf_counter() - self.t0
                eta = elapsed / max(done, 1e-9) - elapsed
                print(f"{name}: step {state.global_step}/{state.max_steps} ({100 * done:.0f}%), "
                      f"loss {self.loss:.4f}, {elapsed:.0f} s elapsed, ~{eta:.0f} s left", flush=True)
                while self.next <= done + 1e-9:
                    self.next += every

    return ProgressLines()


def loss_log(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """The training-loss lines of a Trainer's ``log_history``: [{step, loss, learning_rate}, ...]."""
    return [{"step": int(e["step"]), "loss": float(e["loss"]), "learning_rate": float(e.get("learning_rate", 0.0))}
            for e in log_history if "loss" in e and "step" in e]


__all__ = ["drop_printer", "in_notebook", "loss_log", "progress_lines"]
