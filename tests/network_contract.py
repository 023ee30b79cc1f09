"""The contract every segmentation network keeps, as a test class to subclass.

``class TestMyNetwork(NetworkContract): model = ModelConfig(arch="my_net", ...)`` (tiny settings;
``model.arch`` an SMP architecture of ``models.smp.ARCHITECTURES`` or a builder registered in
:data:`~dualteacher.registry.NETWORKS`) runs every check below on the network that
:func:`~dualteacher.models.build.model_from_config` builds from those settings at random init,
as the engine, the methods, inference and export use it (:class:`~dualteacher.models.contract.SegmentationNetwork`):

* logits ``[B, num_classes, H, W]`` in float32 at any input size, also sides that are not
  multiples of ``stride``, and smaller than it;
* eval mode is deterministic and an image's logits do not depend on the rest of its batch;
* drop-path: built with ``drop_path > 0`` the train-mode forward is stochastic (and the weights
  are those of the network without it, so a teacher can follow a student by EMA), or the
  builder refuses with ``ValueError``; without drop-path a train-mode forward draws nothing
  from torch's global RNG (the methods' seeded steps rely on it);
* ``param_groups()`` partitions the parameters, and every trained parameter gets a gradient
  (DDP runs without ``find_unused_parameters``);
* ``forward(x, perturb)`` decodes the same features twice (UniMatch), a sub-batch included;
* a network rebuilt from the same settings loads the state dict and predicts the same (a
  checkpoint);
* normalisation metadata: ``model_normalization`` gives three means in [0, 1] and three positive
  stds, and configured ``model.mean``/``model.std`` win.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualteacher.config import ModelConfig
from dualteacher.models.build import model_from_config, model_normalization
from dualteacher.models.contract import SegmentationNetwork

if TYPE_CHECKING:
    from dualteacher.models.contract import SegmentationModule

NUM_CLASSES = 3
SIZES = [(37, 50), (20, 24)]
"""Input sides (H, W): not multiples of any built-in stride, the second smaller than most strides."""
_BUILT: dict[tuple[str, float, int], SegmentationModule] = {}
"""Networks built so far, by (settings, drop_path, seed): each test gets a deep copy (a ViT's
random init costs more than the checks)."""


def images(batch: int, size: tuple[int, int], seed: int = 0) -> Tensor:
    """Normalised-looking float32 images ``[batch, 3, H, W]`` drawn from ``seed``."""
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def seeded_forward(network: nn.Module, x: Tensor, seed: int) -> Tensor:
    """The forward with torch's global RNG seeded first (drop-path draws from it)."""
    torch.manual_seed(seed)
    return network(x)


class NetworkContract:
    """Checks that fail when a network breaks what the rest of the code relies on; see the module docstring."""

    model: ModelConfig
    """Tiny settings of the network under test."""
    drop_path: bool = True
    """False: the network has no drop-path and its builder must refuse a rate > 0 with ValueError."""
    batch_atol: ClassVar[float] = 1e-5
    """Absolute tolerance between an image's logits alone and in a batch (float32 matmuls round
    differently by batch size)."""
    known_failures: ClassVar[dict[str, str]] = {}
    """Test name -> why this network breaks that part of the contract today: the test is expected
    to fail (strict: once the network is fixed it fails until the entry is removed)."""

    @pytest.fixture(autouse=True)
    def _known_failure(self, request: pytest.FixtureRequest) -> None:
        reason = self.known_failures.get(request.node.originalname)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))

    def build(self, drop_path: float = 0.0, seed: int = 0) -> SegmentationModule:
        """The network at random init (``seed`` draws the weights), in eval mode; a fresh copy each call."""
        key = (repr(self.model), drop_path, seed)
        if key not in _BUILT:
            torch.manual_seed(seed)
            _BUILT[key] = model_from_config(self.model, NUM_CLASSES, drop_path=drop_path, pretrained=False)
        return copy.deepcopy(_BUILT[key]).eval()

    def test_it_is_a_module_with_a_stride_and_param_groups(self) -> None:
        network = self.build()
        assert isinstance(network, nn.Module) and isinstance(network, SegmentationNetwork)
        assert isinstance(network.stride, int) and network.stride >= 1

    @pytest.mark.parametrize("size", SIZES)
    def test_logits_are_float32_at_the_input_size(self, size: tuple[int, int]) -> None:
        with torch.no_grad():
            logits = self.build()(images(2, size))
        assert isinstance(logits, Tensor) and logits.shape == (2, NUM_CLASSES, *size)
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()

    def test_eval_is_deterministic_and_each_image_independent_of_its_batch(self) -> None:
        network, x = self.build(drop_path=0.2 if self.drop_path else 0.0), images(3, SIZES[0])
        with torch.no_grad():
            first, second = seeded_forward(network, x, 0), seeded_forward(network, x, 1)
            alone = network(x[1:2])
        assert torch.equal(first, second)  # drop-path is off in eval mode
        torch.testing.assert_close(alone, first[1:2], rtol=1e-4, atol=self.batch_atol)

    def test_a_train_forward_without_drop_path_draws_nothing_from_the_global_rng(self) -> None:
        network, x = self.build().train(), images(2, SIZES[0])
        torch.manual_seed(0)
        state = torch.get_rng_state()
        with torch.no_grad():
            first = network(x)
        assert torch.equal(torch.get_rng_state(), state)
        with torch.no_grad():
            assert torch.equal(network(x), first)

    def test_drop_path_is_honoured_or_refused(self) -> None:
        if not self.drop_path:
            with pytest.raises(ValueError):
                self.build(drop_path=0.2)
            return
        student, x = self.build(drop_path=0.5).train(), images(2, SIZES[0])
        with torch.no_grad():  # a draw may keep every branch of both images: several seeds
            first, again, *others = [seeded_forward(student, x, seed) for seed in (0, 0, 1, 2, 3)]
        assert torch.equal(first, again) and not all(torch.equal(first, other) for other in others)
        teacher = self.build()  # what a teacher of that student is: the same weights without drop-path
        shapes = {k: v.shape for k, v in teacher.state_dict().items()}
        assert {k: v.shape for k, v in student.state_dict().items()} == shapes

    def test_param_groups_partition_the_parameters(self) -> None:
        network = self.build()
        encoder, head = network.param_groups()
        assert encoder and head
        grouped = [id(p) for p in [*encoder, *head]]
        assert len(grouped) == len(set(grouped)) and set(grouped) == {id(p) for p in network.parameters()}

    def test_every_trained_parameter_gets_a_gradient(self) -> None:
        network = self.build().train()
        target = torch.randint(0, NUM_CLASSES, (2, *SIZES[0]), generator=torch.Generator().manual_seed(0))
        F.cross_entropy(network(images(2, SIZES[0])), target).backward()
        ungraded = [name for name, p in network.named_parameters() if p.requires_grad and p.grad is None]
        assert not ungraded, f"parameters without a gradient (DDP would stop): {ungraded[:5]}"

    def test_a_perturbed_stream_decodes_the_same_features_again(self) -> None:
        network, x = self.build(), images(3, SIZES[0])
        with torch.no_grad():
            clean = network(x)
            same, again = network(x, perturb=lambda features: features)
            _, first_only = network(x, perturb=lambda features: [f[:1] for f in features])
        assert torch.equal(same, clean) and torch.equal(again, clean)
        assert first_only.shape == (1, NUM_CLASSES, *SIZES[0])
        torch.testing.assert_close(first_only, clean[:1], rtol=1e-4, atol=1e-5)

    def test_a_rebuilt_network_loads_the_weights_and_predicts_the_same(self) -> None:
        trained, rebuilt, x = self.build(seed=0), self.build(seed=1), images(2, SIZES[0])
        with torch.no_grad():
            assert not torch.equal(trained(x), rebuilt(x))  # the seed drew other weights
            rebuilt.load_state_dict(trained.state_dict())
            assert torch.equal(trained(x), rebuilt(x))

    def test_normalisation_is_three_means_and_three_positive_stds(self) -> None:
        mean, std = model_normalization(self.model)
        assert len(mean) == len(std) == 3 and all(isinstance(v, float) for v in (*mean, *std))
        assert all(0 <= m <= 1 for m in mean) and all(0 < s <= 1 for s in std)
        configured = dataclasses.replace(self.model, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
        assert model_normalization(configured) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
