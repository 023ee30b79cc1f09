"""A folder dataset's mask value map (``ROOT/mask_values.json``): the reader applies it to every
mask it reads, with ``data.ignore_index``, and never changes a file; a bad map is an error naming it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualteacher.config import load_config
from dualteacher.data.build import source_from_config
from dualteacher.data.core import DataError
from dualteacher.data.mask_values import (
    BINARY_255,
    MaskValues,
    binary_255,
    mask_label_map,
    read_mask_values,
    write_mask_values,
)
from dualteacher.data.registry import open_source

from scenes import make_scenes


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    """The issue-14 scenes as a 2-class dataset whose masks store the square as 255 (no disc)."""
    return make_scenes(tmp_path / "defects", ["background", "defect"], foreground=255, disc=0)


def stored(root: Path, sample_id: str) -> np.ndarray:
    return np.asarray(Image.open(root / "masks" / f"{sample_id}.png"))


def test_the_reader_applies_the_map_to_every_mask_it_reads(binary: Path) -> None:
    before = hashlib.sha256(b"".join(p.read_bytes() for p in sorted((binary / "masks").iterdir()))).hexdigest()
    assert open_source("folder", binary).dataset(["train000"], labeled=True)[0]["mask"].max() == 255  # as stored
    write_mask_values(binary, BINARY_255)
    source = open_source("folder", binary)
    assert source.mask_values is not None and source.mask_values.mapping == {0: 0, 255: 1}
    assert source.files(["train000"], labeled=True).label_map is source.label_map
    dataset = source.dataset(["train000", "val001"], labeled=True)
    for k, sample_id in enumerate(["train000", "val001"]):
        mask = dataset[k]["mask"].numpy()
        assert np.array_equal(
            mask, (stored(binary, sample_id) == 255).astype(mask.dtype)
        )  # 255 is class 1, none ignored
    after = hashlib.sha256(b"".join(p.read_bytes() for p in sorted((binary / "masks").iterdir()))).hexdigest()
    assert after == before


def test_ignore_index_names_another_stored_value_and_never_one_the_map_lists(binary: Path) -> None:
    write_mask_values(binary, {255: 1})
    mask = stored(binary, "train001").copy()
    mask[:3] = 7  # a band of unlabelled pixels, stored as 7
    Image.fromarray(mask).save(binary / "masks" / "train001.png")
    cfg = load_config(None, [f"data.root={binary}", "data.ignore_index=7"])
    read = source_from_config(cfg.data).dataset(["train001"], labeled=True)[0]["mask"].numpy()
    assert (read[:3] == 255).all() and np.array_equal(read[3:], (mask[3:] == 255).astype(read.dtype))
    write_mask_values(binary, BINARY_255)
    with pytest.raises(
        DataError,
        match=r"data\.ignore_index=0 names a stored value that .*mask_values\.json maps to "
        r"class 0.*remove '0' from the file",
    ):
        open_source("folder", binary, ignore_index=0)


def test_the_label_map_is_the_map_then_the_ignore_value() -> None:
    assert mask_label_map(None) is None
    ignore_only = mask_label_map(None, 0)
    assert ignore_only is not None and ignore_only[0] == 255
    table = mask_label_map(MaskValues(Path("m.json"), {255: 1, 3: 255}), 9)
    assert table is not None and (table[255], table[3], table[9], table[0], table[1]) == (1, 255, 255, 0, 1)
    assert mask_label_map(MaskValues(Path("m.json"), {0: 0, 255: 255})) is None  # every value as stored


@pytest.mark.parametrize(
    "text, match",
    [
        ("{0: 1}", r"not readable JSON"),
        ("[0, 1]", r"holds a JSON list, not an object"),
        ('{"x": 1}', r"key 'x' is not a stored mask value 0\.\.255"),
        ('{"256": 1}', r"key '256' is not a stored mask value"),
        ('{"255": 300}', r"'255' maps to 300, not a class index 0\.\.255"),
        ('{"255": true}', r"'255' maps to True, not a class index"),
    ],
)
def test_a_bad_map_is_an_error_naming_the_file_and_the_fix(binary: Path, text: str, match: str) -> None:
    (binary / "mask_values.json").write_text(text)
    with pytest.raises(DataError, match=match) as caught:
        open_source("folder", binary)
    assert str(binary / "mask_values.json") in str(caught.value)
    assert str(caught.value).endswith(f"delete it and run: dualteacher init --data {binary}")


def test_the_file_is_sorted_json_of_strings_to_classes(tmp_path: Path) -> None:
    path = write_mask_values(tmp_path, {255: 1, 0: 0})
    assert path.read_text() == '{\n  "0": 0,\n  "255": 1\n}\n' and json.loads(path.read_text()) == {"0": 0, "255": 1}
    read = read_mask_values(tmp_path)
    assert read is not None and read.mapping == BINARY_255
    assert read_mask_values(tmp_path / "elsewhere") is None


@pytest.mark.parametrize(
    "value_sets, expected",
    [
        ([{0, 255}, {0, 255}, {0}], (2, 0)),  # every mask 0/255
        ([{0, 255}, {0, 1}, {1}], (1, 2)),  # two tools: 0/255 and 0/1
        ([{0, 1}, {0}], None),  # class indices, nothing stored as 255
        ([{0, 255}, {0, 1, 255}], None),  # 255 next to 1 in one mask: 255 marks unlabelled pixels
        ([{0, 2, 255}], None),  # more than 2 values
    ],
)
def test_binary_masks_are_recognised_by_their_values(
    value_sets: list[set[int]], expected: tuple[int, int] | None
) -> None:
    found = binary_255(value_sets)
    assert (None if found is None else (found.as_255, found.as_1)) == expected
