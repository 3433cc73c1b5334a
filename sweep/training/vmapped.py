"""Many trials of any PyTorch model trained at once with ``torch.func.vmap``.

Member k of a ``VmappedRun`` is one trial: its own seed, dropout p, weight decay
λ, epoch budget and patience. Its parameters and buffers are slot k of tensors
shaped [K, …]; a training step is one ``vmap`` over ``functional_call`` of the
task's own model, then one fused Adam step over every active member.

Members never mix: every random draw comes from the member's own generators,
every operation is per slot, and each member has its own Adam step count, so
a member's curve depends on its config alone — not on its slot, its
neighbours, or who joined or left. Its dropout masks are drawn outside vmap
from a generator that continues the stream its seed drew the weights from,
in the order and with the same calls ``nn.Dropout`` makes inside
``train_epochs``: on the CPU a member reproduces ``train_epochs`` of its own
config up to fp32 rounding, dropout included. Buffers are per member too, so
batch norm keeps each member's running statistics.

The parameters live in one [K, n_params] table rather than in
``torch.func.stack_module_state``'s tensor per name: a member joins a running
batch by overwriting its row, and fused Adam takes one tensor per member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.optim.adam import adam

from sweep.training.data import Splits
from sweep.training.dropout import DROPOUT_LAYERS, DropoutMasks, with_masked_dropout
from sweep.training.members import Member, MemberSlots
from sweep.training.tasks import RunConfig
from sweep.training.train import Loss, ModelFactory

PENALTIES = ("l2", "decoupled")
# Validation rows of all members per chunk: keeps K x rows activations in the CPU's cache.
EVAL_STACKED_ROWS = 16_384
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as train_epochs uses them
ADAM_EPS = 1e-8


@dataclass
class _Member(Member):
    """One trial's place in the stack, with the p of each of its model's dropout layers."""

    dropouts: list[float] = field(default_factory=list)  # in model order


class VmappedRun(MemberSlots["_Member"]):
    """Up to ``capacity`` trials of one model trained together; ``step_epoch`` trains each
    active one an epoch.

    ``build(params)`` gives a member's model (its weights drawn right after the
    member's seed is set, as ``train_epochs`` does); ``loss`` is the mean loss of
    a batch. A slot holds a member until the member has trained its epochs, run
    out of patience, or was ``remove``-d (pruned); a free slot takes a new trial
    with ``replace``. Members share the data, learning rate, batch size and device.
    """

    def __init__(
        self,
        data: Splits,
        configs: Sequence[RunConfig],
        *,
        build: ModelFactory,
        loss: Loss,
        lr: float,
        batch_size: int,
        device: str = "cpu",
        capacity: int | None = None,
    ) -> None:
        K = len(configs) if capacity is None else capacity
        if K < 1 or len(configs) > K:
            raise ValueError(f"capacity must be at least 1 and len(configs); got {capacity}")
        self.capacity = K
        self._build, self._loss = build, loss
        self._device = torch.device(device)
        self._lr, self._batch_size = lr, batch_size
        self._X_train, self._y_train = data.X_train.to(device), data.y_train.to(device)
        self._X_val, self._y_val = data.X_val.to(device), data.y_val.to(device)
        if data.X_test is not None and data.y_test is not None:
            self._X_test, self._y_test = data.X_test.to(device), data.y_test.to(device)

        with torch.random.fork_rng(devices=[]):  # only its structure is used
            template = build(configs[0].params) if configs else None
        if template is None:
            raise ValueError("a VmappedRun starts with at least one config")
        self._module = with_masked_dropout(template).to(device)
        self._masks = DropoutMasks(self._module, K, self._device)

        named = list(self._module.named_parameters())
        # Row k of each [K, n_params] table is member k: its parameters, gradient and Adam
        # moments in one contiguous block, so Adam takes one tensor per member.
        n_params = sum(p.numel() for _, p in named)
        self._weights, self._grads, self._exp_avgs, self._exp_avg_sqs = (
            torch.zeros(K, n_params, device=device) for _ in range(4)
        )
        self._steps = torch.zeros(K, device=device)  # Adam's step count, per member
        self._buffers = {
            name: torch.zeros(K, *b.shape, dtype=b.dtype, device=device)
            for name, b in self._module.named_buffers()
            if name not in self._masks.names
        }
        # each parameter of the model: a [K, …] leaf aliasing the table, its elements in the
        # order vmap's backward writes its gradient (a linear layer's: transposed), so that
        # copying the gradient into the table is a straight copy, not a transpose
        self._params: dict[str, torch.Tensor] = {}
        self._param_grads: list[torch.Tensor] = []
        start = 0
        for (name, p), order in zip(named, self._gradient_layouts(), strict=True):
            end = start + p.numel()
            block_shape = [p.shape[d] for d in order]
            dims = [0, *(order.index(d) + 1 for d in range(p.dim()))]
            view = self._weights[:, start:end].view(K, *block_shape).permute(dims)
            self._params[name] = view.requires_grad_()
            self._param_grads.append(self._grads[:, start:end].view(K, *block_shape).permute(dims))
            start = end
        self._l2 = torch.zeros(K, 1, device=device)  # λ of coupled-L2 members, else 0
        self._shrink = torch.ones(K, 1, device=device)  # 1 - ηλ of decoupled members, else 1
        self._members: list[_Member | None] = [None] * K
        self._last_configs: list[RunConfig | None] = [None] * K
        self._adam_rows: list[list[torch.Tensor]] | None = None  # of the active members
        for slot, config in enumerate(configs):
            self.replace(slot, config)

    def model(self, slot: int) -> nn.Module:
        """A copy of the slot's current (or last) member as the model ``build`` gives.

        The weights stay in the slot after the member finished or was removed,
        until ``replace`` starts a new one there.
        """
        config = self._last_configs[slot]
        if config is None:
            raise ValueError(f"slot {slot} has never held a member")
        with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten anyway
            model = self._build(config.params).to(self._device)
        state = {name: t[slot].detach() for name, t in (self._params | self._buffers).items()}
        model.load_state_dict(state)
        return model

    def remove(self, slot: int) -> None:
        """Stop training the member in ``slot`` (e.g. pruned); the others do not notice.

        Its weights stay as they are (see ``model``) until ``replace``.
        """
        self._members[slot] = None
        self._adam_rows = None
        with torch.no_grad():  # Adam skips the slot; the decay must skip it too
            self._l2[slot] = 0.0
            self._shrink[slot] = 1.0

    def replace(self, slot: int, config: RunConfig) -> None:
        """Start a new trial in the free ``slot``: fresh weights and Adam state from its seed."""
        if self._members[slot] is not None:
            raise ValueError(f"slot {slot} is still training; remove() its member first")
        if config.penalty not in PENALTIES:
            raise ValueError(f"unknown penalty {config.penalty!r}; use 'l2' or 'decoupled'")
        if config.epochs < 1:
            raise ValueError(f"epochs must be at least 1; got {config.epochs}")
        # Weights as train_epochs draws them (manual_seed, then build), without touching
        # the caller's global random state.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(config.seed)
            model = self._build(config.params)
            after_init = torch.get_rng_state()
        dropouts = [float(m.p) for m in model.modules() if isinstance(m, DROPOUT_LAYERS)]
        if len(dropouts) != len(self._masks.layers) or not all(0.0 <= p < 1.0 for p in dropouts):
            raise ValueError(f"every dropout p must be in [0, 1); got {dropouts}")
        if self._device.type == "cpu":  # masks continue the stream that drew the weights
            masks = torch.Generator()
            masks.set_state(after_init)
        else:
            masks = torch.Generator(device=self._device).manual_seed(config.seed)
        shuffle = torch.Generator(device=self._device).manual_seed(config.seed)

        state = model.state_dict()
        with torch.no_grad():
            for name, stacked in (self._params | self._buffers).items():
                stacked[slot] = state[name]
            # a fresh Adam: the trial starts at step 1 whatever the others' step
            self._exp_avgs[slot] = 0.0
            self._exp_avg_sqs[slot] = 0.0
            self._steps[slot] = 0.0
            coupled = config.penalty == "l2"
            decay = config.params.weight_decay
            self._l2[slot] = decay if coupled else 0.0
            # rounded once from float64, as torch's AdamW computes 1 - ηλ
            self._shrink[slot] = 1.0 if coupled else 1.0 - self._lr * decay
        self._members[slot] = _Member(config, masks, shuffle, dropouts=dropouts)
        self._last_configs[slot] = config
        self._adam_rows = None

    def _gradient_layouts(self) -> list[list[int]]:
        """For each parameter, its dimensions from outermost to innermost in the gradient
        vmap's backward gives (one trial step of two members on a few training rows)."""
        rows = min(8, len(self._y_train))
        params = {
            name: p.detach().expand(2, *p.shape).clone().requires_grad_()
            for name, p in self._module.named_parameters()
        }
        buffers = {name: b[:2].clone() for name, b in self._buffers.items()}
        x = self._X_train[:rows].expand(2, *self._X_train[:rows].shape)
        y = self._y_train[:rows].expand(2, rows)
        self._module.train()
        with torch.random.fork_rng(devices=[]):
            losses = vmap(self._member_loss, randomness="different")(params, buffers, x, y)
        grads = torch.autograd.grad(losses.sum(), list(params.values()), allow_unused=True)
        layouts: list[list[int]] = []
        for grad, p in zip(grads, params.values(), strict=True):
            strides = (grad if grad is not None else p).stride()[1:]
            layouts.append(sorted(range(len(strides)), key=lambda d: -strides[d]))
        return layouts

    def _member_loss(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> torch.Tensor:
        return self._loss(functional_call(self._module, (params, buffers), (x,)), y)

    def _train_one_epoch(self, members: list[_Member | None]) -> torch.Tensor:
        """Train the active members one epoch; the summed training loss of every slot."""
        n_train, device = len(self._y_train), self._device
        unused = torch.arange(n_train, device=device)
        orders = torch.stack(
            [
                torch.randperm(n_train, device=device, generator=m.shuffle) if m else unused
                for m in members
            ]
        )
        decoupled = any(m is not None and m.config.penalty == "decoupled" for m in members)
        coupled = any(
            m is not None and m.config.penalty == "l2" and m.config.params.weight_decay > 0
            for m in members
        )
        dropouts = [(m.dropouts, m.masks) if m is not None else None for m in members]
        # randomness="different": random ops of the model itself draw apart per member
        losses_of = vmap(self._member_loss, randomness="different")
        train_sum = torch.zeros(self.capacity, device=device)
        for start in range(0, n_train, self._batch_size):
            batch = orders[:, start : start + self._batch_size]
            x = self._X_train[batch]
            masks = self._masks.draw(dropouts, x[0], partial(self._forward_member_0, x[0]))
            buffers = self._buffers | masks
            self._module.train()
            loss = losses_of(self._params, buffers, x, self._y_train[batch])
            # members share no weights: the gradient of the sum is each member's own
            grads = torch.autograd.grad(loss.sum(), list(self._params.values()))
            with torch.no_grad():
                for table_view, grad in zip(self._param_grads, grads, strict=True):
                    table_view.copy_(grad)
                if coupled:  # Adam(weight_decay=λ): the gradient gets + λw
                    self._grads.addcmul_(self._weights, self._l2)
                if decoupled:  # AdamW: w ← (1 - ηλ)w, then the Adam step
                    self._weights.mul_(self._shrink)
                self._adam_step()
                train_sum += loss.detach() * batch.shape[1]
        return train_sum

    def _forward_member_0(self, x: torch.Tensor) -> None:
        """Slot 0's model on ``x`` in eval mode, its outputs and statistics discarded."""
        with torch.no_grad():
            params = {name: t[0] for name, t in self._params.items()}
            buffers = {name: t[0].clone() for name, t in self._buffers.items()}
            self._module.eval()
            functional_call(self._module, (params, buffers), (x,))

    def _adam_step(self) -> None:
        """One step of torch's fused Adam over the active members' rows."""
        if self._adam_rows is None:
            tables = (self._weights, self._grads, self._exp_avgs, self._exp_avg_sqs, self._steps)
            slots = self.active_slots
            self._adam_rows = [[table[k] for k in slots] for table in tables]
        params, grads, exp_avgs, exp_avg_sqs, steps = self._adam_rows
        adam(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            fused=True,  # as train_epochs: one kernel for every tensor
            amsgrad=False,
            beta1=ADAM_BETAS[0],
            beta2=ADAM_BETAS[1],
            lr=self._lr,
            weight_decay=0.0,  # λ is per member: applied to the stack before this step
            eps=ADAM_EPS,
            maximize=False,
        )

    def _evaluate(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct predictions of every slot on ``X``, ``y``, dropout off."""
        K = self.capacity
        loss_sum = torch.zeros(K, device=self._device)
        correct = torch.zeros(K, device=self._device)
        chunk = max(1, EVAL_STACKED_ROWS // K)
        outputs_of = vmap(
            lambda params, buffers, x: functional_call(self._module, (params, buffers), (x,)),
            in_dims=(0, 0, None),
        )
        losses_of = vmap(self._loss, in_dims=(0, None))
        self._module.eval()
        with torch.no_grad():
            for start in range(0, len(y), chunk):
                x = X[start : start + chunk]
                labels = y[start : start + chunk]
                outputs = outputs_of(self._params, self._buffers, x)
                loss_sum += losses_of(outputs, labels) * len(labels)
                correct += (outputs.argmax(dim=-1) == labels).sum(dim=-1)
        return loss_sum, correct
