"""A training progress bar that shows the live loss (replaces transformers' log printing)."""

from __future__ import annotations

from tqdm.auto import tqdm
from transformers import TrainerCallback


class LiveLossBar(TrainerCallback):
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, desc="train", unit="step", disable=not self.enabled)
        self.bar.update(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        for key, label in (("loss", "loss"), ("eval_loss", "val"), ("learning_rate", "lr")):
            if key in logs:
                value = logs[key]
                self.postfix[label] = f"{value:.2e}" if label == "lr" else f"{value:.4f}"
        self.bar.set_postfix(self.postfix, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
