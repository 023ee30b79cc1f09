"""A method may own more than one trained network: the engine asks the method for its trained
networks and optimiser groups. A toy cross-pseudo-supervision method (two students, each
teaching the other), defined and registered here alone, trains both end to end through
``train()``, and a resumed run continues both exactly; it keeps the method contract too."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from dualteacher.config import MethodSettings, load_config
from dualteacher.methods import Batch, Method, MethodContext
from dualteacher.methods.common import confidence_and_label
from dualteacher.registry import METHODS
from dualteacher.semi.losses import pseudo_label_loss, supervised_ce
from dualteacher.training import distributed
from dualteacher.training.loop import Trainer, train

from conftest import tiny_overrides
from method_contract import MethodContract


@dataclass
class CrossPseudoSupervisionSettings(MethodSettings):
    """The toy's own setting: the stochastic depth of both students."""

    student_drop_path: float = 0.0


class CrossPseudoSupervision(Method):
    """Two students: CE on the labelled batch for both, and each learns the other's argmax on the
    unlabelled batch."""

    Settings = CrossPseudoSupervisionSettings
    cfg: CrossPseudoSupervisionSettings

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.peer = ctx.build(self.cfg.student_drop_path)

    def trained(self) -> dict[str, nn.Module]:
        return {"student": self.student, "peer": self.peer}

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert labeled.mask is not None and unlabeled is not None and unlabeled.valid is not None
        n = labeled.image.shape[0]
        images = self.norm(torch.cat([labeled.image, unlabeled.image]))
        a, b = self.forward_net("student")(images), self.forward_net("peer")(images)
        loss_sup = supervised_ce(a[:n], labeled.mask) + supervised_ce(b[:n], labeled.mask)
        (conf_a, label_a), (conf_b, label_b) = (
            confidence_and_label(a[n:].detach()),
            confidence_and_label(b[n:].detach()),
        )
        loss_cross = pseudo_label_loss(a[n:], label_b, conf_b, unlabeled.valid, 0.0, "none") + pseudo_label_loss(
            b[n:], label_a, conf_a, unlabeled.valid, 0.0, "none"
        )
        return loss_sup + loss_cross, {"loss_sup": loss_sup.detach(), "loss_cross": loss_cross.detach()}


class TestCrossPseudoSupervisionContract(MethodContract):
    method = CrossPseudoSupervision


@pytest.fixture(scope="module")
def cps() -> Iterator[None]:
    with METHODS.registered("cps", CrossPseudoSupervision):
        yield


def settings(tiny_data, run: Path) -> list[str]:
    return tiny_overrides(tiny_data, run, "cps", method__student_drop_path=0.0)


def roles(tensors: dict[str, Tensor], role: str) -> dict[str, Tensor]:
    return {k: v for k, v in tensors.items() if k.startswith(f"model/{role}/")}


@pytest.fixture(scope="module")
def full_run(cps, tiny_data, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The run trained uninterrupted through ``train()``, and its final record."""
    run = tmp_path_factory.mktemp("cps") / "full"
    return run, train(load_config(None, settings(tiny_data, run)), progress=False)


def test_the_engine_optimises_wraps_and_syncs_every_trained_network(
    cps, tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapped: list[nn.Module] = []
    synced: list[nn.Module] = []

    def wrap(module: nn.Module, device: torch.device) -> nn.Module:
        wrapped.append(module)
        return module

    monkeypatch.setattr(distributed, "wrap", wrap)
    monkeypatch.setattr(distributed, "average_buffers", synced.append)
    trainer = Trainer(load_config(None, settings(tiny_data, tmp_path / "run")), progress=False)
    networks = list(trainer.method.trained().values())
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for net in networks for p in net.parameters()}
    trainer.fit(stop_at=1)
    assert wrapped == networks and synced == networks


@pytest.mark.slow
def test_both_networks_learn_and_are_checkpointed(full_run, tiny_data, tmp_path: Path) -> None:
    run, record = full_run
    assert {"student/miou", "peer/miou"} <= set(record)
    initial = Trainer(load_config(None, settings(tiny_data, tmp_path / "fresh")), resume=False, progress=False)
    final = load_file(str(run / "last.safetensors"))
    for role, network in initial.method.trained().items():
        learnt = [
            name for name, start in network.named_parameters() if not torch.equal(final[f"model/{role}/{name}"], start)
        ]
        assert learnt, f"the optimiser did not change the {role}'s weights"
    assert any(
        not torch.equal(value, final[key.replace("/student/", "/peer/")])
        for key, value in roles(final, "student").items()
    )


@pytest.mark.slow
def test_a_resumed_run_continues_both_networks_exactly(full_run, tiny_data, tmp_path: Path) -> None:
    run, _ = full_run
    interrupted = settings(tiny_data, tmp_path / "part")
    Trainer(load_config(None, interrupted), progress=False).fit(stop_at=4)
    train(load_config(None, interrupted), progress=False)
    a, b = load_file(str(run / "last.safetensors")), load_file(str(tmp_path / "part" / "last.safetensors"))
    assert a.keys() == b.keys() and roles(a, "peer")
    assert all(torch.equal(a[key], b[key]) for key in a)
