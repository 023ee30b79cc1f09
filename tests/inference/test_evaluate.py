"""Metrics against hand-computed confusion matrices."""

import torch

from dualteacher.inference.metrics import confusion_matrix, evaluate, metrics_from_confusion


def test_confusion_matrix_counts_and_ignores() -> None:
    target = torch.tensor([[0, 0, 1, 255], [2, 2, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 2], [2, 0, 1, 2]])
    conf = confusion_matrix(pred, target, 3)
    expected = torch.tensor([[1, 1, 0], [0, 2, 1], [1, 0, 1]])
    assert torch.equal(conf, expected)


def test_miou_by_hand_excludes_absent_classes() -> None:
    # 4 classes; class 3 never appears in ground truth or prediction.
    conf = torch.tensor([[5, 1, 0, 0], [2, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    conf[2, 0] = 1  # class 2 appears in ground truth only, never predicted -> IoU 0
    m = metrics_from_confusion(conf)
    iou0 = 5 / (5 + 1 + 2 + 1)
    iou1 = 3 / (3 + 2 + 1)
    assert m.iou[0:3] == [iou0, iou1, 0.0]
    assert m.iou[3] is None
    assert abs(m.miou - (iou0 + iou1 + 0.0) / 3) < 1e-12
    assert abs(m.pixel_accuracy - 8 / 12) < 1e-12


def test_evaluate_scores_every_batch_at_label_resolution() -> None:
    class Oracle(torch.nn.Module):
        """Predicts class 1 where the red channel is bright, else 0."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            fg = (x[:, 0] > 0.5).float()
            return torch.stack([1 - fg, fg], 1)

    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    images[0, 0, :2] = 255
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    masks[0, :2] = 1
    masks[1, 0, 0] = 1  # one pixel the oracle misses
    masks[1, 3] = 255
    metrics, conf = evaluate(Oracle(), [{"image": images, "mask": masks}], 2, torch.device("cpu"))
    assert conf.sum() == 32 - 4
    assert conf[1, 0] == 1
    assert metrics.iou[1] == 8 / 9
