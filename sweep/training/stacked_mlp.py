"""Many trials of the seed's MLP trained at once, as one stacked model.

Member k of a ``StackedMLPRun`` is one trial: its own seed, dropout p, weight
decay λ, epoch budget and patience. Its weights are slot k of tensors shaped
[K, …]; a training step is three batched matmuls (``torch.baddbmm``) for all
members, so K small models cost about as many kernel launches as one.

Members never mix: every operation is per slot and every random draw comes
from the member's own generators, so a member's curve depends on its config
alone — not on its slot, its neighbours, or who was pruned. A member starts
from the weights and minibatch order ``train_epochs`` gives the same seed;
its dropout masks are drawn its own way (see ``_dropout_masks``), so with
dropout 0 it reproduces ``train_epochs`` up to fp32 rounding, and with
dropout it reproduces a ``StackedMLPRun`` of itself alone.

Batched matmuls rather than ``torch.func.vmap`` over ``functional_call``: a
training step of 16 members (forward and backward) took 3.5 ms with ``baddbmm``
and 4.5 ms with vmap on one CPU thread (best of 15), and the per-member dropout
masks enter as plain tensors instead of through vmap's shared random state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.adam import adam

from sweep.training.data import Splits
from sweep.training.members import Member, MemberSlots
from sweep.training.model import build_mlp
from sweep.training.tasks import RunConfig

PENALTIES = ("l2", "decoupled")
# Validation rows of all members per chunk: keeps the K x rows x 256 activations in the
# CPU's cache (K=64 evaluated 1.5x faster in chunks of 256 rows than all 600 at once).
EVAL_STACKED_ROWS = 16_384
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as train_epochs uses them
ADAM_EPS = 1e-8


class _Member(Member):
    """One trial's place in the stack: its config and how far it has come."""

    @property
    def drops(self) -> bool:
        return self.config.params.dropout_1 > 0.0 or self.config.params.dropout_2 > 0.0


@dataclass
class _AdamViews:
    """Rows of the active members in the weight, gradient and Adam state tables."""

    params: list[torch.Tensor]
    grads: list[torch.Tensor]
    exp_avgs: list[torch.Tensor]
    exp_avg_sqs: list[torch.Tensor]
    steps: list[torch.Tensor]


class StackedMLPRun(MemberSlots["_Member"]):
    """Up to ``capacity`` trials trained together; ``step_epoch`` trains each active one an epoch.

    A slot holds a member until the member has trained its epochs, run out of
    patience, or was ``remove``-d (pruned); a free slot takes a new trial with
    ``replace``. Members share the data, learning rate, batch size and device.
    """

    def __init__(
        self,
        data: Splits,
        configs: Sequence[RunConfig],
        *,
        lr: float,
        batch_size: int,
        device: str = "cpu",
        capacity: int | None = None,
    ) -> None:
        K = len(configs) if capacity is None else capacity
        if K < 1 or len(configs) > K:
            raise ValueError(f"capacity must be at least 1 and len(configs); got {capacity}")
        self.capacity = K
        self._device = torch.device(device)
        self._lr, self._batch_size = lr, batch_size
        self._X_train, self._y_train = data.X_train.to(device), data.y_train.to(device)
        self._X_val, self._y_val = data.X_val.to(device), data.y_val.to(device)
        if data.X_test is not None and data.y_test is not None:
            self._X_test, self._y_test = data.X_test.to(device), data.y_test.to(device)
        self._n_features, self._n_classes = data.n_features, data.n_classes

        with torch.random.fork_rng(devices=[]):  # only its shapes are used
            template = build_mlp(self._n_features, self._n_classes, 0.0, 0.0)
        linears = [m for m in template if isinstance(m, nn.Linear)]
        self._widths = [m.out_features for m in linears[:-1]]  # the two dropout layers
        # weights [K, in, out] and biases [K, 1, out]: h = baddbmm(b, x, W) = x @ W + b
        shapes = [
            s for m in linears for s in ((m.in_features, m.out_features), (1, m.out_features))
        ]
        # Row k of each [K, n_params] table is member k: its weights, gradient and Adam
        # moments in one contiguous block, so Adam takes one tensor per member.
        n_params = sum(math.prod(s) for s in shapes)
        self._weights, self._grads, self._exp_avgs, self._exp_avg_sqs = (
            torch.zeros(K, n_params, device=device) for _ in range(4)
        )
        self._steps = torch.zeros(K, device=device)  # Adam's step count, per member
        self._adam_views: _AdamViews | None = None  # of the active members; rebuilt on change
        # the layers' weights and biases: leaves that alias the table; their gradients
        # are copied into the gradient table
        self._params: list[torch.Tensor] = []
        self._param_grads: list[torch.Tensor] = []
        start = 0
        for shape in shapes:
            end = start + math.prod(shape)
            self._params.append(self._weights[:, start:end].view(K, *shape).requires_grad_())
            self._param_grads.append(self._grads[:, start:end].view(K, *shape))
            start = end

        self._keep = torch.ones(2, K, 1, 1, device=device)  # 1 - p of each dropout layer
        self._l2 = torch.zeros(K, 1, device=device)  # λ of coupled-L2 members, else 0
        self._shrink = torch.ones(K, 1, device=device)  # 1 - ηλ of decoupled members, else 1
        # uniform draws behind the dropout masks; zeros (always kept) where no member drew
        self._uniform = torch.zeros(K, batch_size, sum(self._widths), device=device)
        self._members: list[_Member | None] = [None] * K
        self._last_configs: list[RunConfig | None] = [None] * K
        for slot, config in enumerate(configs):
            self.replace(slot, config)

    def model(self, slot: int) -> nn.Sequential:
        """A copy of the slot's current (or last) member as the ``build_mlp`` model it trains.

        The weights stay in the slot after the member finished or was removed,
        until ``replace`` starts a new one there.
        """
        config = self._last_configs[slot]
        if config is None:
            raise ValueError(f"slot {slot} has never held a member")
        p = config.params
        with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten anyway
            model = build_mlp(self._n_features, self._n_classes, p.dropout_1, p.dropout_2)
        linears = [m for m in model if isinstance(m, nn.Linear)]
        stacked = zip(self._params[::2], self._params[1::2], strict=True)
        with torch.no_grad():
            for linear, (W, b) in zip(linears, stacked, strict=True):
                linear.weight.copy_(W[slot].T)
                linear.bias.copy_(b[slot, 0])
        return model.to(self._device)

    def remove(self, slot: int) -> None:
        """Stop training the member in ``slot`` (e.g. pruned); the others do not notice.

        Its weights stay as they are (see ``model``) until ``replace``.
        """
        self._members[slot] = None
        self._adam_views = None
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
        params = config.params
        for p in (params.dropout_1, params.dropout_2):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"dropout must be in [0, 1); got {p}")

        # Weights as train_epochs draws them (torch.manual_seed, then build_mlp), without
        # touching the caller's global random state.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(config.seed)
            model = build_mlp(self._n_features, self._n_classes, 0.0, 0.0)
            after_init = torch.get_rng_state()
        if self._device.type == "cpu":  # masks continue the stream that drew the weights
            masks = torch.Generator()
            masks.set_state(after_init)
        else:
            masks = torch.Generator(device=self._device).manual_seed(config.seed)
        shuffle = torch.Generator(device=self._device).manual_seed(config.seed)

        linears = [m for m in model if isinstance(m, nn.Linear)]
        values = [t for m in linears for t in (m.weight.T, m.bias.unsqueeze(0))]
        with torch.no_grad():
            for param, value in zip(self._params, values, strict=True):
                param[slot] = value
            # a fresh Adam: the trial starts at step 1 whatever the others' step
            self._exp_avgs[slot] = 0.0
            self._exp_avg_sqs[slot] = 0.0
            self._steps[slot] = 0.0
            self._keep[0, slot] = 1.0 - params.dropout_1
            self._keep[1, slot] = 1.0 - params.dropout_2
            coupled = config.penalty == "l2"
            self._l2[slot] = params.weight_decay if coupled else 0.0
            # rounded once from float64, as torch's AdamW computes 1 - ηλ
            self._shrink[slot] = 1.0 if coupled else 1.0 - self._lr * params.weight_decay
        self._members[slot] = _Member(config, masks, shuffle)
        self._last_configs[slot] = config
        self._adam_views = None

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
        dropping = [m for m in members if m is not None and m.drops]
        decoupled = any(m is not None and m.config.penalty == "decoupled" for m in members)
        coupled = any(
            m is not None and m.config.penalty == "l2" and m.config.params.weight_decay > 0
            for m in members
        )
        train_sum = torch.zeros(self.capacity, device=device)
        for start in range(0, n_train, self._batch_size):
            batch = orders[:, start : start + self._batch_size]
            masks = self._dropout_masks(members, batch.shape[1]) if dropping else (None, None)
            logits = self._forward(self._X_train[batch], masks)
            labels = self._y_train[batch]
            losses = nn.functional.cross_entropy(
                logits.flatten(0, 1), labels.flatten(), reduction="none"
            ).view(labels.shape)
            loss = losses.mean(dim=1)  # each member's mean over its minibatch
            # members share no weights: the gradient of the sum is each member's own
            grads = torch.autograd.grad(loss.sum(), self._params)
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

    def _adam_step(self) -> None:
        """One step of torch's fused Adam over the active members' rows."""
        if self._adam_views is None:
            tables = (self._weights, self._grads, self._exp_avgs, self._exp_avg_sqs, self._steps)
            slots = self.active_slots
            self._adam_views = _AdamViews(*([table[k] for k in slots] for table in tables))
        views = self._adam_views
        adam(
            views.params,
            views.grads,
            views.exp_avgs,
            views.exp_avg_sqs,
            [],
            views.steps,
            fused=True,  # as train_epochs: one kernel for every tensor
            amsgrad=False,
            beta1=ADAM_BETAS[0],
            beta2=ADAM_BETAS[1],
            lr=self._lr,
            weight_decay=0.0,  # λ is per member: applied to the stack before this step
            eps=ADAM_EPS,
            maximize=False,
        )

    def _dropout_masks(
        self, members: list[_Member | None], rows: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverted-dropout multipliers of both layers: 0, or 1/(1-p) with probability 1-p.

        Each member with dropout draws one [rows, 256 + 128] block of uniforms per
        step from its own generator (a unit is kept where u < 1-p). One uniform
        draw per member is several times cheaper on the CPU than two
        ``bernoulli_`` calls, and the draws of a member do not depend on the others.
        """
        uniform = self._uniform[:, :rows]
        for k, member in enumerate(members):
            if member is not None and member.drops:
                uniform[k].uniform_(generator=member.masks)
        u_1, u_2 = uniform[..., : self._widths[0]], uniform[..., self._widths[0] :]
        keep_1, keep_2 = self._keep
        return (u_1 < keep_1) * keep_1.reciprocal(), (u_2 < keep_2) * keep_2.reciprocal()

    def _forward(self, x: torch.Tensor, masks: Sequence[torch.Tensor | None]) -> torch.Tensor:
        W1, b1, W2, b2, W3, b3 = self._params
        h = torch.baddbmm(b1, x, W1).relu_()
        if masks[0] is not None:
            h = h * masks[0]
        h = torch.baddbmm(b2, h, W2).relu_()
        if masks[1] is not None:
            h = h * masks[1]
        return torch.baddbmm(b3, h, W3)

    def _evaluate(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct predictions of every slot on ``X``, ``y``, dropout off."""
        K = self.capacity
        loss_sum = torch.zeros(K, device=self._device)
        correct = torch.zeros(K, device=self._device)
        chunk = max(1, EVAL_STACKED_ROWS // K)
        with torch.no_grad():
            for start in range(0, len(y), chunk):
                x = X[start : start + chunk]
                labels = y[start : start + chunk]
                logits = self._forward(x.expand(K, *x.shape), (None, None))
                loss_sum += (
                    nn.functional.cross_entropy(
                        logits.flatten(0, 1), labels.repeat(K), reduction="none"
                    )
                    .view(K, -1)
                    .sum(dim=1)
                )
                correct += (logits.argmax(dim=2) == labels).sum(dim=1)
        return loss_sum, correct
