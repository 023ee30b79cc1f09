"""Load a trained network from a checkpoint alone, score it on a dataset split, predict on images.

Images given to :meth:`LoadedModel.predict` are read as follows: a path or a PIL image goes
through the decoder of the training data (:func:`~dualteacher.data.core.load_image`): turned
upright by its EXIF orientation, as in training, evaluation and ``check-data``, then
converted to RGB (grayscale and palette images expanded, an alpha channel dropped, 16-bit
grayscale rescaled to 8 bits); a numpy array must
be uint8 ``[H, W]`` (grayscale), ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA, alpha dropped)
and is taken as given. Predictions are made at the
image's own resolution with the run's evaluation protocol (``data.eval_*``: mode, tile,
stride, flip, scales, resize; a ``center`` protocol predicts the whole image), so a prediction
is what the run's evaluation scored: ``whole`` runs the full image at once (padded to the
network's stride), ``slide`` runs overlapping ``tile`` x ``tile`` windows (default: the
training crop size) and averages their probabilities. Each setting can be overridden.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dualteacher.checkpoint import CheckpointError, load_checkpoint, load_module
from dualteacher.config import Config, DataConfig, config_from_dict
from dualteacher.data.core import DataError, load_image, rgb_image
from dualteacher.data.registry import open_source, reader
from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.inference.colors import palette
from dualteacher.inference.metrics import Metrics, Predictor
from dualteacher.inference.modes import EvalSettings, build_predictor, evaluate_split
from dualteacher.models.build import model_from_config
from dualteacher.models.contract import Normalization, normalize

if TYPE_CHECKING:
    from dualteacher.models.contract import SegmentationModule

ImageInput = str | Path | Image.Image | np.ndarray


def image_array(image: ImageInput) -> np.ndarray:
    """Any accepted input (see the module docstring) as an ``[H, W, 3]`` uint8 RGB array.

    Files and PIL images go through the data decoder (:func:`~dualteacher.data.core.load_image`),
    EXIF orientation applied as in training: :class:`DataError` naming the file if it cannot be
    read or converted; ValueError/TypeError for a numpy array or object of the wrong kind."""
    if isinstance(image, (str, Path)):
        return np.asarray(load_image(image))
    if isinstance(image, Image.Image):
        return np.asarray(rgb_image(image))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"numpy images must be uint8, got {image.dtype}")
        if image.ndim == 2:
            return np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim == 3 and image.shape[2] in (1, 3, 4):
            return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
        raise ValueError(f"numpy images must be [H, W], [H, W, 3] or [H, W, 4], got shape {image.shape}")
    raise TypeError(f"expected a path, PIL image or numpy array, got {type(image).__name__}")


def to_batch(images: list[np.ndarray], device: torch.device) -> Tensor:
    """Same-sized ``[H, W, 3]`` uint8 arrays as a float ``[B, 3, H, W]`` batch in [0, 1]."""
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return stacked.to(device).float().div_(255)


@dataclass
class LoadedModel:
    """A network in eval mode with everything needed to use it: classes and normalisation."""

    network: SegmentationModule
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    role: str
    state: dict[str, Any]
    device: torch.device
    palette: np.ndarray
    protocol: EvalSettings

    @property
    def tile(self) -> int:
        """The run's evaluation tile (``data.eval_tile``, default the training crop size)."""
        return self.protocol.tile

    @property
    def stride(self) -> int:
        """Input sides are padded (bottom/right) to a multiple of this inside the network."""
        return int(self.network.stride)

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        """Logits for a float batch in [0, 1], ``[B, 3, H, W]``, at the input resolution."""
        return self.network(normalize(images.to(self.device), self.mean, self.std))

    def prediction_settings(
        self,
        mode: str | None = None,
        tile: int | None = None,
        stride: int | None = None,
        *,
        flip: bool | None = None,
        scales: tuple[float, ...] | None = None,
        resize: tuple[int, int] | None = None,
        window_batch: int | None = None,
    ) -> EvalSettings:
        """The run's protocol with every given value replaced, for whole images
        (:meth:`EvalSettings.for_whole_images`: a mode that crops predicts whole images). Raises
        ValueError for an unknown mode or an invalid combination."""
        return self.protocol.override(
            mode=mode, tile=tile, stride=stride, flip=flip, scales=scales, resize=resize, window_batch=window_batch
        ).for_whole_images()

    def predictor(self, settings: EvalSettings | None = None) -> Predictor:
        """A function from a float batch in [0, 1] of images of one size to logits, under
        ``settings`` (default :meth:`prediction_settings`); log mean probabilities with windows or TTA."""
        return build_predictor(self.logits, settings or self.prediction_settings(), len(self.classes))

    def predict(
        self, image: ImageInput, *, mode: str | None = None, tile: int | None = None, stride: int | None = None
    ) -> np.ndarray:
        """The ``[H, W]`` class map of one image at its own (upright) resolution.

        ``image`` is a path, a PIL image or a uint8 numpy array (see the module docstring);
        ``mode``/``tile``/``stride`` override the run's protocol. The result is uint8 when the
        classes fit in it (up to 256), int64 otherwise. Raises ValueError for an unknown mode.
        """
        batch = to_batch([image_array(image)], self.device)
        pred = self.predictor(self.prediction_settings(mode, tile, stride))(batch).argmax(1)[0].cpu().numpy()
        return pred.astype(np.uint8 if len(self.classes) <= 256 else np.int64)

    @property
    def trained_data(self) -> DataConfig:
        """The ``data`` settings of the run that made this model."""
        return config_from_dict(self.state["config"]).data

    def is_trained_data(self, dataset: str | None = None, root: str | Path | None = None) -> bool:
        """Whether ``dataset`` at ``root`` (None: the run's) is the data the run trained on."""
        trained = self.trained_data
        return (dataset or trained.dataset) == trained.dataset and str(root or trained.root) == trained.root

    def default_split(self, dataset: str | None = None, root: str | Path | None = None) -> str:
        """The split to score by default: the run's ``data.val_split`` on the data it was trained
        on, ``val`` on any other."""
        return self.trained_data.val_split if self.is_trained_data(dataset, root) else "val"

    def eval_dataset(
        self,
        root: str | Path | None = None,
        split: str | None = None,
        *,
        dataset: str | None = None,
        splits_dir: str | None = None,
        settings: EvalSettings | None = None,
        batch_size: int | None = None,
        workers: int = 0,
        ignore_index: int | None = None,
    ) -> Metrics:
        """mIoU, per-class IoU and pixel accuracy of this model on ``split`` of a dataset.

        Unset arguments default to what the model was trained with (dataset, root, splits
        directory, val split (:meth:`default_split`), evaluation protocol, val batch size, and for
        the folder layout the mask value of unlabelled pixels, ``data.ignore_index``). Raises :class:`DataError` for a dataset that
        cannot be read or whose class count differs from the model's.
        """
        trained = self.trained_data
        if splits_dir is None:
            splits_dir = trained.splits_dir if self.is_trained_data(dataset, root) else ""
        split = split or self.default_split(dataset, root)
        dataset = dataset or trained.dataset
        root = root or trained.root
        if ignore_index is None:
            ignore_index = IGNORE_INDEX if reader(dataset).benchmark else trained.ignore_index
        source = open_source(dataset, root, splits_dir, ignore_index=ignore_index)
        if len(source.classes) != len(self.classes):
            raise DataError(
                f"the model predicts {len(self.classes)} classes but {dataset} at {root} has {len(source.classes)}"
            )
        metrics, _ = evaluate_split(
            self.logits,
            source,
            split,
            settings or self.protocol,
            self.device,
            batch_size=batch_size or trained.val_batch_size,
            workers=workers,
        )
        return metrics


def checkpoint_card(cfg: Config, classes: list[str], norm: Normalization) -> dict[str, Any]:
    """The header entries every checkpoint carries for :func:`load_model`: the run's settings,
    the class names and count, and the input normalisation (mean, std)."""
    mean, std = norm
    return {
        "config": cfg.to_dict(),
        "classes": classes,
        "num_classes": len(classes),
        "mean": list(mean),
        "std": list(std),
    }


def load_model(path: str | Path, role: str | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network stored at ``path``: a checkpoint file, a folder written by
    ``dualteacher push`` (``model.safetensors`` + ``config.json``) or a Hugging Face hub model id
    ``ORG/NAME`` (downloaded into the hub cache; :func:`~dualteacher.inference.hub.load_shared`).

    A ``best.safetensors`` or a shared folder holds one network; a training checkpoint
    (``last.safetensors``) holds the student and every teacher, of which ``role`` picks one
    (default: the student). Raises :class:`CheckpointError` naming ``path`` and what was looked
    for when it is missing, unreadable or holds no ``role`` network.
    """
    from dualteacher.inference import hub

    location = Path(path)
    if location.is_dir() or (not location.exists() and hub.is_hub_id(str(path))):
        return hub.load_shared(path, role=role, device=device)
    if not location.exists():
        raise CheckpointError(
            f"{path} does not exist: looked for a checkpoint file (best.safetensors, "
            f"last.safetensors), a folder holding {hub.LAYOUT}, or a hub model id ORG/NAME"
        )
    tensors, state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    network = model_from_config(cfg.model, state["num_classes"], pretrained=False)
    if state["kind"] == "model":
        if role not in (None, state["role"]):
            raise CheckpointError(f"{path} holds only the {state['role']!r} network, not {role!r}")
        role = state["role"]
        load_module(network, tensors, "model")
    else:
        role = role or "student"
        load_module(network, tensors, f"model/{role}")
    return loaded_model(network, state, role, device)


def loaded_model(
    network: SegmentationModule, state: dict[str, Any], role: str, device: str | torch.device = "cpu"
) -> LoadedModel:
    """``network``, its weights loaded, in eval mode on ``device`` with what ``state`` (a
    checkpoint header or a shared model's config) says about it: classes, normalisation and
    the run's evaluation protocol."""
    device = torch.device(device)
    network.to(device).eval()
    return LoadedModel(
        network=network,
        classes=list(state["classes"]),
        mean=tuple(state["mean"]),
        std=tuple(state["std"]),
        role=role,
        state=state,
        device=device,
        palette=palette(len(state["classes"])),
        protocol=EvalSettings.from_config(config_from_dict(state["config"]).data),
    )
