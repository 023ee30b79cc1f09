"""A dataset layout is one class plus one registry line: a layout defined in this file alone is
checked by ``check-data`` and trained on through ``train()``."""

import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest

from dualteacher.cli import main
from dualteacher.config import load_config
from dualteacher.data.core import FileListDataset, find_missing, ignore_map, missing_files_error, read_list_text
from dualteacher.data.registry import open_source
from dualteacher.data.source import DataSource, SampleFiles
from dualteacher.data.transforms import IGNORE_INDEX, Transform
from dualteacher.registry import DATASETS
from dualteacher.training.loop import train

from conftest import tiny_overrides


class SampleFolders(DataSource):
    """One folder per sample: ``ROOT/samples/<id>/photo.png`` and ``label.png`` (class indices,
    ``ignore_index`` = unlabelled); ``ROOT/names.txt`` names the classes; split lists in
    ``<splits_dir>/<name>.txt``."""

    def __init__(self, root: str | Path, splits_dir: str | Path, ignore_index: int = IGNORE_INDEX) -> None:
        self.label_map = ignore_map(ignore_index)
        super().__init__(root, splits_dir)

    @property
    def classes(self) -> list[str]:
        return read_list_text(self.root / "names.txt")

    def files(self, ids: list[str], *, labeled: bool) -> SampleFiles:
        folders = [self.root / "samples" / i for i in ids]
        masks = [f / "label.png" for f in folders] if labeled else None
        return SampleFiles([f / "photo.png" for f in folders], masks, self.label_map)

    def dataset(
        self,
        ids: list[str],
        *,
        labeled: bool,
        transform: Transform | Callable | None = None,
        check_classes: bool = True,
    ) -> FileListDataset:
        files = self.files(ids, labeled=labeled)
        missing = find_missing(files.images + (files.masks or []))
        if missing:
            raise missing_files_error(self.root, missing, labeled)
        return FileListDataset(
            ids,
            files.images,
            files.masks,
            labeled=labeled,
            transform=transform,
            num_classes=len(self.classes) if check_classes else None,
            label_map=self.label_map,
        )

    def entry_id(self, entry: str) -> str:
        parts = PurePosixPath(entry.replace("\\", "/")).parts
        return parts[1] if len(parts) > 2 and parts[0] == "samples" else entry


def sample_folders(folder_root: Path, root: Path) -> Path:
    """The folder-layout dataset at ``folder_root`` rewritten in the :class:`SampleFolders` layout."""
    for image in (folder_root / "images").iterdir():
        sample = root / "samples" / image.stem
        sample.mkdir(parents=True)
        shutil.copy(image, sample / "photo.png")
        shutil.copy(folder_root / "masks" / f"{image.stem}.png", sample / "label.png")
    shutil.copy(folder_root / "classes.txt", root / "names.txt")
    shutil.copytree(folder_root / "splits", root / "splits")
    return root


@pytest.mark.slow
def test_a_layout_in_one_file_is_checked_and_trained_on(tiny_data, tmp_path: Path, capsys) -> None:
    root = sample_folders(Path(tiny_data["root"]), tmp_path / "toy")
    data = {**tiny_data, "root": str(root)}
    with DATASETS.registered("sample_folders", SampleFolders):
        source = open_source("sample_folders", root)
        assert source.name == "sample_folders" and source.classes == open_source("folder", tiny_data["root"]).classes
        val = source.split_ids("val")
        (root / "splits" / "as_paths.txt").write_text("".join(f"samples/{i}/photo.png\n" for i in val[:2]))
        assert source.split_ids("as_paths") == val[:2]  # entries naming files become ids (entry_id)

        check = [
            "check-data",
            "--dataset",
            "sample_folders",
            "--data",
            str(root),
            "--full",
            "--no-cache",
            "--workers",
            "0",
            "--labeled-split",
            data["labeled"],
            "--unlabeled-split",
            data["unlabeled"],
        ]
        assert main(check) == 0, capsys.readouterr().out
        assert "0 errors" in capsys.readouterr().out

        overrides = tiny_overrides(
            data,
            tmp_path / "run",
            "mean_teacher",
            data__dataset="sample_folders",
            train__epochs=1,
            train__iters_per_epoch=2,
        )
        record = train(load_config(None, overrides), progress=False)
    assert 0.0 <= record["student/miou"] <= 1.0
    assert (tmp_path / "run" / "last.safetensors").is_file()
    assert "sample_folders" not in DATASETS
