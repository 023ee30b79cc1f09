"""Data parallelism on CPU (gloo): collectives under a real 2-process group, and a torchrun run.

The collective checks run once, in two processes started by ``torch.multiprocessing.spawn``;
each rank writes what it observed to a JSON file that the tests below read.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dualteacher.config import load_config
from dualteacher.data.build import eval_loader, open_splits
from dualteacher.data.sampler import ShuffledStreamSampler
from dualteacher.inference.metrics import evaluate
from dualteacher.runlog import read_log
from dualteacher.training import distributed

from conftest import tiny_overrides

WORLD = 2


def toy_model(norm: str) -> nn.Module:
    """A tiny segmentation-shaped network; ``norm`` "group" has no batch statistics, "batch" has."""
    torch.manual_seed(0)
    layer = nn.GroupNorm(2, 4) if norm == "group" else nn.BatchNorm2d(4)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), layer, nn.ReLU(), nn.Conv2d(4, 3, 1))


def sgd_step(model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    nn.functional.cross_entropy(model(images), target).backward()
    opt.step()


def _worker(rank: int, store: str, out: str, data_root: str, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    result: dict[str, object] = {}

    # 2 ranks x B images through DDP == 1 process x 2B images, for a model without batch statistics.
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2 * 4, 3, 8, 8, generator=gen)
    target = torch.randint(0, 3, (2 * 4, 8, 8), generator=gen)
    reference = toy_model("group")
    sgd_step(reference, images, target)
    ddp = nn.parallel.DistributedDataParallel(toy_model("group"))
    sgd_step(ddp, images[rank * 4 : (rank + 1) * 4], target[rank * 4 : (rank + 1) * 4])
    result["max_param_diff"] = max(
        float((a - b).abs().max()) for a, b in zip(reference.parameters(), ddp.module.parameters())
    )

    # BatchNorm running statistics drift apart per rank without SyncBatchNorm; averaging re-aligns them.
    bn = toy_model("batch")
    bn(images[rank * 4 : (rank + 1) * 4])
    before = distributed.checksum({"bn": bn})["bn"]
    gathered: list[str | None] = [None] * WORLD
    dist.all_gather_object(gathered, before)
    result["bn_differs_before"] = len(set(gathered)) > 1
    distributed.average_buffers(bn)
    dist.all_gather_object(gathered, distributed.checksum({"bn": bn})["bn"])
    result["bn_agrees_after"] = len(set(gathered)) == 1

    # verify_replicas: silent when identical, raises on every rank when one replica is perturbed.
    model = toy_model("group")
    distributed.verify_replicas({"student": model})
    if rank == 1:
        with torch.no_grad():
            model.get_parameter("0.bias")[0] += 1e-7
    try:
        distributed.verify_replicas({"student": model, "teacher": toy_model("group")})
        result["mismatch"] = None
    except distributed.ReplicaMismatch as err:
        result["mismatch"] = str(err)

    # Sharded evaluation scores every val image exactly once.
    cfg = load_config(None, overrides)
    data = open_splits(cfg.data, need_unlabeled=False)
    val, classes = data.val, len(data.classes)
    loader = eval_loader(val, 3, workers=0, rank=rank, world_size=WORLD)
    result["local_images"] = sum(batch["image"].shape[0] for batch in loader)
    _, conf = evaluate(lambda x: torch.zeros(x.shape[0], classes, *x.shape[2:]), loader, classes, torch.device("cpu"))
    result["scored_pixels"] = int(conf.sum())
    result["labelled_pixels"] = sum(int((val[i]["mask"] != 255).sum()) for i in range(len(val)))
    result["val_size"] = len(val)

    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Run :func:`_worker` on 2 gloo ranks once; each rank's observations."""
    out = tmp_path_factory.mktemp("ddp")
    overrides = tiny_overrides(tiny_data, out / "run")
    mp.spawn(_worker, args=(str(out / "store"), str(out), tiny_data["root"], overrides), nprocs=WORLD, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.mark.slow
def test_two_ranks_of_b_equal_one_process_of_2b(ranks: list[dict]) -> None:
    # DDP averages the ranks' mean gradients = the mean over 2B; only float summation order differs.
    for result in ranks:
        assert result["max_param_diff"] < 1e-6


def test_two_ranks_draw_the_single_process_batches_split_between_them() -> None:
    # When the world size divides the dataset, step k of 2 ranks x B is exactly step k of one
    # process x 2B: same images, same augmentation seeds, no image on both ranks.
    size, batch = 24, 4
    single = iter(ShuffledStreamSampler(size, seed=3))
    shards = [iter(ShuffledStreamSampler(size, seed=3, rank=r, world_size=2)) for r in range(2)]
    for _ in range(9):  # crosses pass boundaries (reshuffles)
        halves = [[next(s) for _ in range(batch)] for s in shards]
        assert sorted(next(single) for _ in range(2 * batch)) == sorted(halves[0] + halves[1])
        assert not {i for i, _ in halves[0]} & {i for i, _ in halves[1]}


@pytest.mark.slow
def test_batchnorm_statistics_are_averaged_across_ranks(ranks: list[dict]) -> None:
    assert ranks[0]["bn_differs_before"]
    assert all(r["bn_agrees_after"] for r in ranks)


@pytest.mark.slow
def test_verify_replicas_detects_a_perturbed_replica_on_every_rank(ranks: list[dict]) -> None:
    for result in ranks:
        assert result["mismatch"] is not None and "student" in result["mismatch"]
        assert "teacher" not in result["mismatch"]


@pytest.mark.slow
def test_sharded_evaluation_scores_every_val_image_once(ranks: list[dict]) -> None:
    assert sum(r["local_images"] for r in ranks) == ranks[0]["val_size"]
    for result in ranks:
        assert result["scored_pixels"] == result["labelled_pixels"] > 0


def torchrun_train(overrides: list[str]) -> None:
    """``dualteacher train`` under torchrun with WORLD gloo processes of one thread each.

    The device is left to ``auto``: on a machine with one GPU both ranks share it over gloo, so
    the same tests cover DDP with CUDA tensors and SyncBatchNorm there.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", distributed.BACKEND_ENV: "gloo"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={WORLD}",
            "-m",
            "dualteacher",
            "train",
            *overrides,
            "--quiet",
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_dual_teacher_keeps_replicas_identical(tiny_data, tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_data, run, "dual_teacher", train__batch_size=2)
    torchrun_train(overrides)
    # verify_replicas ran at both evaluations (it raises otherwise) and both epochs were scored.
    evals = [r for r in read_log(run) if r["type"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2]
    assert all(0.0 <= r["teacher1/miou"] <= 1.0 for r in evals)
    assert (run / "last.safetensors").exists() and (run / "best.safetensors").exists()


@pytest.mark.slow
def test_torchrun_unimatch_syncs_both_streams(tiny_data, tmp_path: Path) -> None:
    # UniMatch runs the DDP-wrapped network twice per step, once with the feature-perturbation
    # stream; unsynchronised gradients would make the replicas differ at evaluation.
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_data, run, "unimatch", train__batch_size=2, train__epochs=1)
    torchrun_train(overrides)
    assert [r["epoch"] for r in read_log(run) if r["type"] == "eval"] == [1]


@pytest.mark.slow
def test_torchrun_tracks_on_rank_0_only(tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only rank 0 writes the CSV log and opens an MLflow run; the environment records both ranks' world."""
    tracking = pytest.importorskip("mlflow.tracking", reason="needs pip install 'dualteacher[mlflow]'")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "run"
    torchrun_train(tiny_overrides(tiny_data, run, train__batch_size=2, train__epochs=1, train__loggers="[mlflow]"))
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows if ",train/loss," in row] == ["1", "2", "3"]  # once each
    client = tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "dualteacher"]
    assert len(client.search_runs([experiment.experiment_id])) == 1
    (entry,) = json.loads((run / "environment.json").read_text())["environments"]
    assert entry["world_size"] == WORLD


def test_backend_follows_the_device_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.delenv(distributed.BACKEND_ENV, raising=False)
    assert (distributed.backend(cpu), distributed.backend(gpu)) == ("gloo", "nccl")
    monkeypatch.setenv(distributed.BACKEND_ENV, " GLOO ")
    assert distributed.backend(gpu) == "gloo"
    monkeypatch.setenv(distributed.BACKEND_ENV, "mpi")
    with pytest.raises(ValueError, match="DUALTEACHER_DIST_BACKEND='mpi'"):
        distributed.backend(cpu)
    monkeypatch.setenv(distributed.BACKEND_ENV, "nccl")
    with pytest.raises(RuntimeError, match="needs a CUDA device.*cpu"):
        distributed.backend(cpu)


def test_nccl_with_more_processes_than_gpus_stops_before_joining(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(distributed.BACKEND_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.gpu_index() == 0
    with pytest.raises(RuntimeError, match="only 1 GPU.*--nproc_per_node=1.*DUALTEACHER_DIST_BACKEND=gloo"):
        distributed.setup(torch.device("cuda", 0))
    assert not dist.is_initialized()
