"""Dropout for members trained together: each member's masks drawn as ``nn.Dropout`` draws them.

``with_masked_dropout`` copies a model with every dropout layer replaced by a
``MaskedDropout``, which multiplies by the multipliers it is given (a buffer,
so ``functional_call`` under vmap hands each member its own). ``DropoutMasks``
draws them: per member and layer, ``bernoulli_(1 - p)`` then ``div_(1 - p)``
from the member's generator, in the order the forward applies the layers —
the calls ``nn.Dropout`` makes, so a member's masks are the ones its run alone
would draw from the same random state.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

# the layers whose p a trial sets (nn.Dropout and the channel-wise ones for images)
DROPOUT_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)

# per member: the p of each dropout layer (model order) and the generator of its masks
MemberDropout = tuple[Sequence[float], torch.Generator]


class MaskedDropout(nn.Module):
    """Inverted dropout whose multipliers (0 or 1/(1-p), per member) are given as ``mask``."""

    def __init__(self, channel_wise: bool) -> None:
        super().__init__()
        self.channel_wise = channel_wise  # Dropout1d/2d/3d: one draw per (row, channel)
        self.masked = False  # whether any member drops here this step
        self.register_buffer("mask", torch.ones(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.masked:
            return x
        return x * self.get_buffer("mask")

    def noise_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """The shape of the multipliers ``nn.Dropout`` (or DropoutNd) draws for ``x``."""
        if not self.channel_wise:
            return tuple(x.shape)
        return (*x.shape[:2], *([1] * (x.dim() - 2)))


def with_masked_dropout(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose dropout layers take their multipliers as a ``mask`` buffer."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, DROPOUT_LAYERS):
                setattr(parent, name, MaskedDropout(type(child) is not nn.Dropout))
    return model


class DropoutMasks:
    """The ``MaskedDropout`` layers of a module and the multipliers drawn for ``capacity``
    members each step."""

    def __init__(self, module: nn.Module, capacity: int, device: torch.device) -> None:
        named = [(n, m) for n, m in module.named_modules() if isinstance(m, MaskedDropout)]
        self.layers = [m for _, m in named]
        self.names = [f"{n}.mask" for n, _ in named]  # as functional_call takes them
        self._capacity, self._device = capacity, device
        self._no_mask = torch.ones(capacity, device=device)  # where no member drops
        # per minibatch size: the layers in the order the forward applies them, and shapes
        self._calls: dict[int, list[tuple[int, tuple[int, ...]]]] = {}

    def draw(
        self, members: Sequence[MemberDropout | None], x: torch.Tensor, forward: Callable[[], None]
    ) -> dict[str, torch.Tensor]:
        """Every layer's multipliers for every slot (ones where a member does not drop).

        ``x`` is one member's minibatch; ``forward()`` runs the module once on it (in
        eval mode) the first time a minibatch of its size comes, to find the shapes.
        """
        for j, layer in enumerate(self.layers):
            layer.masked = any(m is not None and m[0][j] > 0.0 for m in members)
        calls = self._calls.get(len(x))
        if calls is None:
            calls = self._calls[len(x)] = self._find_calls(forward)
        masks = {name: self._no_mask for name in self.names}
        for j, shape in calls:  # in the order the forward applies them, as it draws them
            if not self.layers[j].masked:
                continue
            noise = torch.empty(self._capacity, *shape, device=self._device)
            for k, member in enumerate(members):
                p = member[0][j] if member is not None else 0.0
                if member is not None and p > 0.0:
                    noise[k].bernoulli_(1 - p, generator=member[1]).div_(1 - p)
                else:
                    noise[k].fill_(1.0)
            masks[self.names[j]] = noise
        return masks

    def _find_calls(self, forward: Callable[[], None]) -> list[tuple[int, tuple[int, ...]]]:
        """Each layer ``forward()`` applies, in order: its index and its multipliers' shape."""
        calls: list[tuple[int, tuple[int, ...]]] = []

        def recorder(j: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
            def record(layer: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                if any(seen == j for seen, _ in calls):
                    raise ValueError(f"dropout layer {j} is applied more than once per forward")
                calls.append((j, self.layers[j].noise_shape(args[0])))

            return record

        hooks = [m.register_forward_pre_hook(recorder(j)) for j, m in enumerate(self.layers)]
        try:
            forward()
        finally:
            for hook in hooks:
                hook.remove()
        return calls
