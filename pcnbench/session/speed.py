"""The recipe's speed settings as a session applies them: TF32 switches and the compiled model."""

from __future__ import annotations

import torch
from torch import nn

from pcnbench.recipe import Recipe

__all__ = ["Compiler", "set_tf32"]


def set_tf32(recipe: Recipe, device: torch.device) -> None:
    """recipe.precision's TF32 switches on a CUDA device (set per session: they are global).

    fp32 and bf16 keep PyTorch's defaults (TF32 for cuDNN convolutions, not for matmuls);
    tf32 allows it for both. Nothing changes on other devices.
    """
    if device.type == "cuda":
        tf32 = recipe.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = True


def _hook_keys(model: nn.Module) -> tuple[int, ...]:
    """The handles of every module hook of `model`: compiled code does not see later changes."""
    return tuple(
        key
        for module in model.modules()
        for hooks in (
            module._forward_pre_hooks,
            module._forward_hooks,
            module._backward_pre_hooks,
            module._backward_hooks,
        )
        for key in hooks
    )


class Compiler:
    """recipe.compile for one session: the compiled form of its current model.

    Built at the model's first training step, afresh for each model (`forget` when the model is
    replaced) and when the model's hooks changed since (compiled code would not run them).
    Evaluation, calibration, counting and checkpoints use the model itself: its hooks fire, its
    state_dict is the model's.
    """

    def __init__(self, mode: bool | str) -> None:
        self.mode = mode
        self._compiled: nn.Module | None = None
        self._hooks: tuple[int, ...] = ()  # the hook handles it was built under
        self._before = False  # whether this session compiled a model yet

    def forget(self) -> None:
        """Drop the compiled model (the session's model was replaced): compile it again."""
        self._compiled = None

    def compiled(self, model: nn.Module) -> nn.Module:
        """What training steps call: `model`, or with recipe.compile its compiled form."""
        mode = self.mode
        if mode is False:
            return model
        hooks = _hook_keys(model)
        if self._compiled is None or hooks != self._hooks:
            if not self._before or self._compiled is not None:
                # A fresh cache per session (the limit on recompilations is per code object,
                # e.g. Sequential.forward across cells), and after a hook change: compiled
                # code is not guarded on hooks, so it would skip the new ones.
                torch._dynamo.reset()
            self._compiled = torch.compile(
                model, mode=None if mode == "default" else mode, dynamic=False
            )
            self._hooks = hooks
            self._before = True
        return self._compiled
