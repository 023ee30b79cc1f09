"""Sharing a trained model in the Hugging Face hub layout, and loading it back.

``dualteacher push`` turns a checkpoint into a folder of three files, uploaded to a hub
repository or kept on disk:

* ``model.safetensors``: the chosen network's ``state_dict`` only (keys as the network names
  them, metadata ``{"format": "pt"}``): no optimiser, no other network, no pickles;
* ``config.json``: what :func:`~dualteacher.inference.model.load_model` needs besides the
  weights (the run's settings, classes, normalisation, architecture), the recorded val
  metrics, the command that reproduces them, the dualteacher version and what the run trained
  in (``environments``, :mod:`dualteacher.environment`);
* ``README.md``: a model card whose YAML front matter (library, licence, pipeline tag, tags,
  datasets, ``model-index`` with the val mIoU) is written by ``huggingface_hub``'s
  :class:`~huggingface_hub.ModelCardData`, and whose body describes the method, the recipe, the
  classes and the environment.

:func:`load_shared` reads such a folder, or a hub id ``ORG/NAME`` fetched with
``huggingface_hub.snapshot_download`` (the hub cache, ``HF_HOME``/``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` apply). Writing the card, uploading and downloading need the ``hub`` extra
(``pip install 'dualteacher[hub]'``); reading a local folder does not.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from dualteacher import __version__
from dualteacher.checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint
from dualteacher.config import Config, config_from_dict
from dualteacher.environment import describe
from dualteacher.inference.modes import EvalSettings
from dualteacher.registry import METHODS

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from dualteacher.inference.model import LoadedModel

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
FORMAT = "dualteacher"
FORMAT_VERSION = 1
LAYOUT = f"{WEIGHTS_NAME} and {CONFIG_NAME} (the layout `dualteacher push` writes)"

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
"""A hub model id, ``ORG/NAME``."""

HUB_DATASETS = {"ade20k": "zhoubolei/scene_parse_150"}
"""``data.dataset`` -> the id of the same data on the hub, where there is one."""

DATASET_NAMES = {
    "voc": "PASCAL VOC 2012",
    "voc_aug": "PASCAL VOC 2012 with SBD",
    "cityscapes": "Cityscapes",
    "ade20k": "ADE20K",
}

RECIPE_KEYS = [
    "method.name",
    "model.arch",
    "model.encoder",
    "model.weights",
    "model.output_stride",
    "data.dataset",
    "data.labeled_split",
    "data.unlabeled_split",
    "data.crop_size",
    "train.batch_size",
    "train.unlabeled_batch_size",
    "train.epochs",
    "train.iters_per_epoch",
    "optim.name",
    "optim.lr",
    "optim.weight_decay",
]
"""The settings listed in the card's recipe table besides every setting of the method's own
``method`` section (all are in ``config.json``)."""


class HubError(CheckpointError):
    """A model cannot be shared or loaded in the hub layout; the message names the folder or id,
    what was looked for and the command that fixes it."""


def require_hub(purpose: str) -> ModuleType:
    """``huggingface_hub``, imported; :class:`HubError` saying ``purpose`` needs the ``hub`` extra
    when it is not installed."""
    try:
        import huggingface_hub
    except ImportError as error:
        raise HubError(f"{purpose} needs huggingface_hub: pip install 'dualteacher[hub]'") from error
    return huggingface_hub


def is_hub_id(text: str) -> bool:
    """Whether ``text`` has the form of a hub model id, ``ORG/NAME`` (it may also be a relative path)."""
    return HUB_ID.fullmatch(text) is not None and not text.endswith(".safetensors")


# ----------------------------------------------------------------------------- writing


def check_repo_id(repo_id: str) -> None:
    """:class:`HubError` unless ``repo_id`` is ``ORG/NAME``."""
    if not is_hub_id(repo_id):
        raise HubError(f"--repo-id must be ORG/NAME (letters, digits, '.', '_', '-'), got {repo_id!r}")


def checkpoint_of(source: Path, role: str | None) -> Path:
    """The checkpoint file to share from ``source``: the file itself, or in a run directory its
    ``best.safetensors`` (when ``role`` is None or is the network it holds), else its
    ``last.safetensors`` (which holds every network). Raises :class:`HubError` naming what is missing."""
    if source.is_file():
        return source
    if not source.is_dir():
        raise HubError(
            f"{source} does not exist: push takes a run directory or a checkpoint file "
            "(best.safetensors, last.safetensors)"
        )
    best, last = source / "best.safetensors", source / "last.safetensors"
    if best.is_file() and role in (None, _stored_role(best)):
        return best
    if role is not None and last.is_file():
        return last
    wanted = "best.safetensors" if role is None else f"a best.safetensors holding {role!r} or a last.safetensors"
    raise HubError(f"{source} holds no {wanted}; train the run to its first evaluation, or name a checkpoint file")


def _stored_role(path: Path) -> str | None:
    """The network a ``best.safetensors`` holds (None: it does not load)."""
    try:
        return load_checkpoint(path)[1].get("role")
    except CheckpointError:
        return None


def recorded_metrics(state: dict[str, Any], role: str) -> dict[str, Any] | None:
    """The val metrics the run recorded for the ``role`` network at the checkpoint's iteration:
    a ``best.safetensors``'s own, or a training checkpoint's last evaluation at that iteration
    (None: the network was not evaluated with these weights)."""
    if state.get("metrics"):
        return state["metrics"]
    last = (state.get("history") or [{}])[-1]
    if last.get("iteration") != state.get("iteration") or f"{role}/miou" not in last:
        return None
    found = {"miou": last[f"{role}/miou"], "pixel_accuracy": last.get(f"{role}/pixel_accuracy")}
    if f"{role}/iou" in last:
        found["iou"] = last[f"{role}/iou"]
    return found


def eval_command(repo_id: str, cfg: Config) -> str:
    """The ``dualteacher eval`` command that scores the shared model as the run's evaluation did:
    on the run's dataset, root, split lists and val split, under its ``data.eval_*`` protocol."""
    data = cfg.data
    words = ["dualteacher", "eval", repo_id, "--dataset", data.dataset, "--data", data.root]
    if data.splits_dir:
        words += ["--splits-dir", data.splits_dir]
    return shlex.join([*words, "--split", data.val_split])


def hub_config(model: LoadedModel, repo_id: str, checkpoint: Path) -> dict[str, Any]:
    """The content of ``config.json`` for ``model`` shared as ``repo_id``; it is also the
    ``state`` of the :class:`LoadedModel` that :func:`load_shared` rebuilds."""
    cfg = config_from_dict(model.state["config"])
    metrics = recorded_metrics(model.state, model.role)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dualteacher_version": __version__,
        "kind": "model",
        "role": model.role,
        "iteration": model.state["iteration"],
        "architecture": {
            "arch": cfg.model.arch,
            "encoder": cfg.model.encoder,
            "output_stride": cfg.model.output_stride,
            "decoder_channels": cfg.model.decoder_channels,
            "num_classes": len(model.classes),
            "stride": model.stride,
            "parameters": sum(p.numel() for p in model.network.parameters()),
        },
        "classes": model.classes,
        "num_classes": len(model.classes),
        "mean": list(model.mean),
        "std": list(model.std),
        "metrics": metrics,
        "eval_command": eval_command(repo_id, cfg) if metrics else None,
        "source": {"checkpoint": checkpoint.name, "repo_id": repo_id},
        "config": model.state["config"],
        "environments": model.state.get("environments", []),
    }


def _dataset_names(cfg: Config) -> tuple[str, str]:
    """(model-index dataset type, pretty name) of the run's data."""
    dataset = cfg.data.dataset
    if dataset in DATASET_NAMES:
        return HUB_DATASETS.get(dataset, dataset), DATASET_NAMES[dataset]
    name = Path(cfg.data.root).name or dataset
    return name, f"{name} ({dataset} layout)"


def _method_summary(name: str) -> str:
    """The first paragraph of the method's module docstring (empty for an unknown method)."""
    try:
        doc = sys.modules[METHODS.get(name).__module__].__doc__ or ""
    except ValueError:
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _setting(settings: dict[str, Any], key: str) -> Any:
    section, _, name = key.partition(".")
    return settings[section][name]


def model_card(config: dict[str, Any], repo_id: str) -> ModelCard:
    """The model card of a shared model: front matter from :class:`~huggingface_hub.ModelCardData`
    (with a ``model-index`` holding the recorded val mIoU and pixel accuracy, and the command
    that reproduces them), and a body with the method, the recipe, the classes and their val IoU.
    Raises :class:`HubError` when huggingface_hub is missing."""
    hf = require_hub("writing the model card")
    cfg = config_from_dict(config["config"])
    method = cfg.method.name
    metrics = config["metrics"]
    dataset_type, dataset_name = _dataset_names(cfg)
    protocol = {
        f"eval_{key}": list(value) if isinstance(value, tuple) else value
        for key, value in EvalSettings.from_config(cfg.data).protocol().items()
        if value is not None
    }
    eval_results = None
    if metrics:
        common = {
            "task_type": "image-segmentation",
            "task_name": "Semantic Segmentation",
            "dataset_type": dataset_type,
            "dataset_name": dataset_name,
            "dataset_split": cfg.data.val_split,
        }
        eval_results = [
            hf.EvalResult(
                **common,
                metric_type="mean_iou",
                metric_name="val mIoU",
                metric_value=round(metrics["miou"], 4),
                metric_args={"command": config["eval_command"], **protocol},
            )
        ]
        if metrics.get("pixel_accuracy") is not None:
            eval_results.append(
                hf.EvalResult(
                    **common,
                    metric_type="accuracy",
                    metric_name="val pixel accuracy",
                    metric_value=round(metrics["pixel_accuracy"], 4),
                )
            )
    card_data = hf.ModelCardData(
        library_name="dualteacher",
        license="apache-2.0",
        pipeline_tag="image-segmentation",
        tags=[
            "dualteacher",
            "semantic-segmentation",
            "semi-supervised-learning",
            method.replace("_", "-"),
            cfg.model.arch,
            cfg.model.encoder,
            "safetensors",
        ],
        datasets=[HUB_DATASETS[cfg.data.dataset]] if cfg.data.dataset in HUB_DATASETS else None,
        metrics=["mean_iou"] if metrics else None,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results,
    )
    return hf.ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{_card_body(config, repo_id, cfg, protocol)}")


def _card_body(config: dict[str, Any], repo_id: str, cfg: Config, protocol: dict[str, Any]) -> str:
    """The Markdown below the front matter."""
    settings = config["config"]
    method = cfg.method.name
    metrics = config["metrics"] or {}
    arch = config["architecture"]
    _, dataset_name = _dataset_names(cfg)
    iou = metrics.get("iou") or {}
    lines = [
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A {arch['arch']} network with a `{arch['encoder']}` encoder ({arch['parameters']:,} parameters, "
        f"{len(config['classes'])} classes) for semantic segmentation: the **{config['role']}** of a "
        f"`{method}` run of dualteacher {config['dualteacher_version']}, "
        f"trained on {dataset_name} ({cfg.data.labeled_split!r} labelled"
        + (f", {cfg.data.unlabeled_split!r} unlabelled" if method != "supervised" else "")
        + f") for {config['iteration']} iterations.",
        "",
        "## Method",
        "",
        _method_summary(method) or f"`{method}`",
        "",
        "## Evaluation",
        "",
    ]
    if metrics:
        accuracy = metrics.get("pixel_accuracy")
        lines += [
            f"Val mIoU **{metrics['miou']:.4f}**"
            + (f", pixel accuracy {accuracy:.4f}" if accuracy is not None else "")
            + f" on the `{cfg.data.val_split}` split of {dataset_name}, recorded by the run at iteration "
            f"{config['iteration']} with its evaluation protocol "
            + ", ".join(f"`{k}: {v}`" for k, v in protocol.items())
            + ". This command scores it again "
            "(`--data` is where the data was when it was trained: point it at your copy):",
            "",
            "```bash",
            config["eval_command"],
            "```",
        ]
    else:
        lines.append(
            "No val evaluation was recorded for these weights (a training checkpoint saved between "
            "evaluations); score them with `dualteacher eval`."
        )
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "pip install 'dualteacher[hub]'",
        f"dualteacher predict {repo_id} photos/ --out predictions/ --overlay",
        "```",
        "",
        "```python",
        "from dualteacher import load_model",
        "",
        f'model = load_model("{repo_id}")   # downloaded once into the Hugging Face cache',
        'mask = model.predict("scene.png")  # [H, W] class indices at the image resolution',
        "```",
        "",
        (
            f"Inputs are RGB in [0, 1], normalised with mean {config['mean']} and std {config['std']} inside "
            f"`model.logits`; sides are padded to a multiple of {arch['stride']}."
        ),
        "",
        "## Classes",
        "",
        "| index | class | val IoU |",
        "|---|---|---|",
    ]
    for index, name in enumerate(config["classes"]):
        value = iou.get(name)
        lines.append(f"| {index} | {name} | {'–' if value is None else f'{value:.4f}'} |")
    lines += ["", "## Training recipe", "", "| setting | value |", "|---|---|"]
    method_keys = [f"method.{name}" for name in settings["method"] if name not in ("name", "init_from")]
    for key in RECIPE_KEYS + method_keys:
        lines.append(f"| `{key}` | `{json.dumps(_setting(settings, key))}` |")
    lines += [
        "",
        "<details><summary>Every setting of the run (also in config.json)</summary>",
        "",
        "```yaml",
        yaml.safe_dump(settings, sort_keys=False).rstrip(),
        "```",
        "",
        "</details>",
        "",
        "## Environment",
        "",
        "What it was trained in (also `environments` in config.json):",
        "",
        "```text",
        *describe(config.get("environments")),
        "```",
        "",
        "## Files",
        "",
        f"- `{WEIGHTS_NAME}`: the network's weights (safetensors, {len(config['classes'])}-class head)",
        f"- `{CONFIG_NAME}`: the run's settings, classes, normalisation, architecture and recorded metrics",
        "",
    ]
    return "\n".join(lines)


def write_hub_folder(model: LoadedModel, folder: str | Path, repo_id: str, checkpoint: Path) -> dict[str, Any]:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` of ``model`` into ``folder``
    (created; each file replaced atomically); the content of ``config.json``. Raises
    :class:`HubError` for a malformed ``repo_id`` or a missing huggingface_hub."""
    check_repo_id(repo_id)
    folder = Path(folder)
    config = hub_config(model, repo_id, checkpoint)
    card = model_card(config, repo_id)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.network.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS_NAME, save(weights, metadata={"format": "pt"}))
    atomic_write_bytes(folder / CONFIG_NAME, (json.dumps(config, indent=1) + "\n").encode())
    atomic_write_bytes(folder / CARD_NAME, str(card).encode())
    return config


@dataclass
class Pushed:
    """What :func:`push` shared: where (a folder or the repository URL), from which checkpoint,
    and the ``config.json`` it wrote (role, recorded metrics, ...)."""

    where: str
    checkpoint: Path
    config: dict[str, Any]


def push(
    source: str | Path,
    repo_id: str,
    *,
    local_dir: str | Path | None = None,
    role: str | None = None,
    private: bool = False,
) -> Pushed:
    """Share the ``role`` network (default: the one ``best.safetensors`` holds, or the student) of
    ``source`` (a run directory or a checkpoint file) as ``repo_id``: written into ``local_dir``
    when given, else uploaded with ``HfApi.upload_folder`` (the repository is created, ``private``
    if asked, when it does not exist). Raises :class:`HubError` (missing source or network,
    malformed id, failed upload, no huggingface_hub) or :class:`CheckpointError` (unreadable
    checkpoint)."""
    from dualteacher.inference.model import load_model

    hf = require_hub("dualteacher push")
    check_repo_id(repo_id)
    checkpoint = checkpoint_of(Path(source), role)
    model = load_model(checkpoint, role=role)
    if local_dir is not None:
        return Pushed(str(local_dir), checkpoint, write_hub_folder(model, local_dir, repo_id, checkpoint))
    with tempfile.TemporaryDirectory(prefix="dualteacher-push-") as folder:
        config = write_hub_folder(model, folder, repo_id, checkpoint)
        api = hf.HfApi(library_name="dualteacher", library_version=__version__)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=f"dualteacher push: the {model.role} of {checkpoint.name} "
                f"(iteration {model.state['iteration']})",
            )
        except Exception as error:  # the transport's errors differ across huggingface_hub versions
            raise HubError(
                f"uploading to {repo_id} failed: {error}\nlog in with `hf auth login` (or set HF_TOKEN) "
                "and check the network, or write the files with --local-dir DIR and upload them later "
                f"(`hf upload {repo_id} DIR`)"
            ) from error
    return Pushed(str(url), checkpoint, config)


# ----------------------------------------------------------------------------- reading


def download(repo_id: str) -> Path:
    """The folder of hub model ``repo_id`` in the Hugging Face cache, fetched there first unless
    it is cached (``snapshot_download``; ``HF_HUB_OFFLINE=1`` reads the cache only). Raises
    :class:`HubError` naming the id and what was looked for."""
    hf = require_hub(f"{repo_id!r} is no file or folder here; loading it as a Hugging Face hub model")
    from huggingface_hub import constants, errors

    here = f"{repo_id!r} is no file or folder here"
    try:
        return Path(
            hf.snapshot_download(
                repo_id,
                allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME],
                library_name="dualteacher",
                library_version=__version__,
            )
        )
    except errors.LocalEntryNotFoundError as error:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub could not be reached"
        raise HubError(
            f"{here}, and as a hub model id it is not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE} while {why}: looked for {LAYOUT}; download it where the "
            f"hub is reachable (`hf download {repo_id}`) into that cache"
        ) from error
    except errors.RepositoryNotFoundError as error:
        raise HubError(
            f"{here}, and the Hugging Face hub has no model {repo_id!r} (or it is private or gated: "
            "log in with `hf auth login`)"
        ) from error
    except (OSError, ValueError) as error:
        raise HubError(f"{here}, and downloading hub model {repo_id!r} failed: {error}") from error


def load_shared(name: str | Path, role: str | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """The model in folder ``name`` (the layout of :func:`write_hub_folder`), or of hub model id
    ``name`` (:func:`download`). ``role``, if given, must be the network it holds. Raises
    :class:`HubError` naming the folder or id and what is missing, :class:`CheckpointError`
    for weights that do not fit the network its config describes."""
    from dualteacher.inference.model import loaded_model
    from dualteacher.models.build import model_from_config

    folder = Path(name)
    label = str(name)
    if not folder.is_dir():
        folder = download(label)
        label = f"hub model {label} ({folder})"
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    missing = [p.name for p in (config_path, weights_path) if not p.is_file()]
    if missing:
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        hint = ": it is a run directory, load its best.safetensors" if (folder / "best.safetensors").is_file() else ""
        raise HubError(
            f"{label} is not a shared dualteacher model{hint}; looked for {LAYOUT}, "
            f"found no {' and no '.join(missing)} (it holds {present})"
        )
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise HubError(f"{config_path} is not readable JSON: {error}") from error
    if config.get("format") != FORMAT:
        raise HubError(f'{config_path} was not written by dualteacher push (no "format": "{FORMAT}")')
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise HubError(
            f"{config_path} has format version {config['format_version']}, newer than this "
            f"dualteacher {__version__} reads ({FORMAT_VERSION}): pip install -U dualteacher"
        )
    if role not in (None, config["role"]):
        raise HubError(f"{label} holds only the {config['role']!r} network, not {role!r}")
    cfg = config_from_dict(config["config"])
    network = model_from_config(cfg.model, config["num_classes"], pretrained=False)
    try:
        weights = load_file(str(weights_path))
        network.load_state_dict(weights, strict=True)
    except (SafetensorError, OSError) as error:
        raise HubError(f"{weights_path} is truncated or not a safetensors file: {error}") from error
    except RuntimeError as error:
        raise CheckpointError(
            f"the weights in {weights_path} do not fit the network its {CONFIG_NAME} describes: {error}"
        ) from error
    return loaded_model(network, config, config["role"], device)
