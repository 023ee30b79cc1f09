"""The contract every training method keeps, as a test class to subclass.

``class TestMyMethod(MethodContract): method = "my_method"`` (a name in
:data:`~dualteacher.registry.METHODS`, or the :class:`~dualteacher.methods.Method` subclass
itself for a toy that is not registered) runs every check below on a tiny random-init network,
as the engine drives a method: ``train()``, ``begin_step``, ``step`` with the unlabelled batch
only when ``uses_unlabeled``, backward, optimiser step, ``after_optimizer_step``.

Every unlabelled pixel teaches (threshold 0, where the method has one), so the unlabelled terms
reach the loss, and the student has no drop-path, so the networks draw nothing from torch's
global RNG and the step's randomness is the generator's alone. A pass over the labelled split
is 2 iterations (``labeled_pass``). The contract also catches the traps of writing a step: a
forward pass with gradients that bypasses the wrapped network (no gradient all-reduce under
torchrun) and a network fed images that were not normalised.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch
from torch import Tensor, nn

from dualteacher.methods import Batch, Method, MethodContext
from dualteacher.models.smp import build_model
from dualteacher.registry import METHODS

NUM_CLASSES = 3
SIZE = 32


def tiny_network(drop_path: float) -> nn.Module:
    """A small random-init DeepLabV3+ (EfficientNet-Lite0 encoder, 16 decoder channels)."""
    return build_model(
        "deeplabv3plus", "tu-tf_efficientnet_lite0", NUM_CLASSES, decoder_channels=16, drop_path=drop_path
    )


def tiny_batches(seed: int = 0) -> tuple[Batch, Batch]:
    """2 labelled and 3 unlabelled random images; ``seed`` draws them."""
    gen = torch.Generator().manual_seed(seed)
    labeled = Batch(
        torch.rand(2, 3, SIZE, SIZE, generator=gen), mask=torch.randint(0, NUM_CLASSES, (2, SIZE, SIZE), generator=gen)
    )
    unlabeled = Batch(torch.rand(3, 3, SIZE, SIZE, generator=gen), valid=torch.ones(3, SIZE, SIZE, dtype=torch.bool))
    return labeled, unlabeled


def network_states(method: Method) -> dict[str, Tensor]:
    """Every network's weights and buffers, keyed ``role/name``."""
    return {f"{role}/{k}": v.clone() for role, net in method.modules().items() for k, v in net.state_dict().items()}


class MethodContract:
    """Checks that fail when a method breaks what the engine relies on; see the module docstring."""

    method: str | type[Method]
    """The registered name, or the class of a method that is not registered."""

    def implementation(self) -> type[Method]:
        """The method's class."""
        return METHODS.get(self.method) if isinstance(self.method, str) else self.method

    def settings(self) -> Any:
        """The method's own settings class with its defaults, threshold 0 and no drop-path."""
        cls = self.implementation()
        fields = {f.name for f in dataclasses.fields(cls.Settings)}
        tweaks: dict[str, Any] = {k: v for k, v in (("threshold", 0.0), ("student_drop_path", 0.0)) if k in fields}
        return cls.Settings(name=self.method if isinstance(self.method, str) else cls.__name__, **tweaks)

    def build(self) -> Method:
        """The method with fixed initial weights, in training mode, at iteration 0."""
        ctx = MethodContext(
            cfg=self.settings(),
            build=tiny_network,
            num_classes=NUM_CLASSES,
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
            labeled_pass=2,
        )
        torch.manual_seed(0)
        method = self.implementation()(ctx)
        method.train()
        method.begin_step(0, 0)
        return method

    def step(self, method: Method, seed: int = 0, unlabeled: Batch | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """``method.step`` on :func:`tiny_batches`, with the unlabelled batch (``unlabeled`` to
        replace it) only if the method reads one, and a generator seeded with ``seed``."""
        labeled, default = tiny_batches()
        batch = (default if unlabeled is None else unlabeled) if method.uses_unlabeled else None
        return method.step(labeled, batch, torch.Generator().manual_seed(seed))

    def test_the_loss_is_a_finite_scalar_whose_gradient_reaches_every_trained_network(self) -> None:
        method = self.build()
        loss, _ = self.step(method)
        assert isinstance(loss, Tensor) and loss.dim() == 0 and loss.is_floating_point()
        assert torch.isfinite(loss) and loss.requires_grad
        loss.backward()
        for role, net in method.trained().items():
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters()), (
                f"no gradient reaches the {role}"
            )

    def test_the_logged_parts_are_detached_scalars(self) -> None:
        _, parts = self.step(self.build())
        for name, part in parts.items():
            assert isinstance(part, Tensor) and part.dim() == 0, name
            assert not part.requires_grad and part.grad_fn is None, f"{name} is not detached"

    def test_the_generator_alone_decides_the_loss(self) -> None:
        """Same states and generator seed, different global RNG: the same loss and parts."""
        results = []
        for global_seed in (1, 2):
            method = self.build()
            torch.manual_seed(global_seed)
            results.append(self.step(method, seed=7))
        (loss_a, parts_a), (loss_b, parts_b) = results
        assert torch.equal(loss_a, loss_b)
        assert parts_a.keys() == parts_b.keys() and all(torch.equal(parts_a[k], parts_b[k]) for k in parts_a)

    def test_the_state_round_trips_through_json_and_the_method_resumes_exactly(self) -> None:
        """Train three iterations (epochs of two), then restore a fresh method as a resumed run does
        (weights, JSON state, ``begin_step`` of the next iteration): equal state, the same next
        loss and the same teacher update."""
        method = self.build()
        optimizer = torch.optim.SGD([p for net in method.trained().values() for p in net.parameters()], lr=0.1)
        for iteration in range(3):
            method.begin_step(iteration, iteration // 2)
            optimizer.zero_grad()
            self.step(method, iteration)[0].backward()
            optimizer.step()
            method.after_optimizer_step()
        state = json.loads(json.dumps(method.state_dict()))
        resumed = self.build()
        for role, net in resumed.modules().items():
            net.load_state_dict(method.modules()[role].state_dict())
        resumed.load_state_dict(state)
        for run in (resumed, method):
            run.begin_step(3, 1)
        assert resumed.state_dict() == method.state_dict()
        assert resumed.active_teacher() == method.active_teacher()
        assert torch.equal(self.step(resumed, seed=5)[0], self.step(method, seed=5)[0])
        resumed.after_optimizer_step()
        method.after_optimizer_step()
        a, b = network_states(resumed), network_states(method)
        assert all(torch.equal(a[k], b[k]) for k in a)

    def test_teachers_are_separate_frozen_networks_that_get_no_gradient(self) -> None:
        method = self.build()
        trained, teachers = method.trained(), method.teachers()
        assert not {id(net) for net in trained.values()} & {id(net) for net in teachers.values()}
        assert len(method.modules()) == len(trained) + len(teachers), "a teacher's role hides a trained network's"
        method.train()  # as the engine does again after an evaluation
        self.step(method)[0].backward()
        for role, teacher in teachers.items():
            assert not teacher.training, f"{role} is in training mode"
            assert all(not p.requires_grad and p.grad is None for p in teacher.parameters()), f"{role} gets gradients"

    def test_uses_unlabeled_says_whether_step_reads_the_unlabelled_batch(self) -> None:
        """False: the step runs without an unlabelled batch (the engine passes None). True:
        another unlabelled batch, all else equal, changes the loss."""
        if not self.implementation().uses_unlabeled:
            labeled, _ = tiny_batches()
            assert torch.isfinite(self.build().step(labeled, None, torch.Generator().manual_seed(0))[0])
            return
        _, other = tiny_batches(seed=1)
        assert not torch.equal(self.step(self.build())[0], self.step(self.build(), unlabeled=other)[0])

    def test_every_forward_with_gradients_goes_through_the_wrapped_network(self) -> None:
        """A step that calls ``self.student(...)`` instead of :meth:`Method.net` /
        :meth:`Method.forward_net` bypasses DDP: its gradients would not be all-reduced."""
        method = self.build()
        inside = {"wrapper": False}
        bypassed: list[str] = []

        class Wrapper(nn.Module):
            def __init__(self, module: nn.Module) -> None:
                super().__init__()
                self.module = module

            def forward(self, *args: Any, **kwargs: Any) -> Any:
                inside["wrapper"] = True
                try:
                    return self.module(*args, **kwargs)
                finally:
                    inside["wrapper"] = False

        method.wrap(Wrapper)
        for role, net in method.trained().items():
            net.register_forward_pre_hook(
                lambda _m, _a, role=role: (
                    bypassed.append(role) if torch.is_grad_enabled() and not inside["wrapper"] else None
                )
            )
        self.step(method)[0].backward()
        assert not bypassed, (
            f"forward passes with gradients bypassed the wrapped {bypassed[0]}: call self.net / self.forward_net(role)"
        )

    def test_every_network_sees_normalised_images(self) -> None:
        """Images arrive in [0, 1]; with mean 0.5 and std 0.25 every network input must reach
        below -1 (``self.norm``), which raw images never do."""
        method = self.build()
        lowest: dict[str, float] = {}
        for role, net in method.modules().items():
            net.register_forward_pre_hook(
                lambda _m, args, role=role: lowest.__setitem__(role, min(lowest.get(role, 0.0), float(args[0].min())))
            )
        self.step(method)
        assert lowest, "no network was called"
        unnormalised = [role for role, low in lowest.items() if low >= 0.0]
        assert not unnormalised, f"{unnormalised[0]} was fed images in [0, 1]: normalise them with self.norm"
