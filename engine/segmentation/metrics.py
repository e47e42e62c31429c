"""Segmentation metrics in two steps: a confusion matrix of counts, then reductions.

``confusion(pred, target, n)`` counts once; ``pixel_accuracy``, ``iou`` and ``mean_iou`` reduce the
counts, so per-batch counts add up to the epoch's exactly. Rows are the true class, columns the
predicted one. Pixels whose target is ``ignore`` (or any value >= n) are not counted.

    >>> import numpy as np
    >>> cm = confusion(np.array([0, 1, 1]), np.array([0, 1, 0]), 2)
    >>> cm.tolist()
    [[1, 1], [0, 1]]
    >>> round(float(mean_iou(cm)), 3)
    0.5
"""

from __future__ import annotations

import numpy as np

IGNORE = 255
"""Target value of pixels left out of the loss and the metrics."""


def confusion(pred: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """Counts (n, n) int64 of (true, predicted) pairs.

    :param pred: predicted class per pixel, any shape
    :param target: true class per pixel, same shape; values >= n are ignored
    """
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    keep = target < n
    return np.bincount(target[keep] * n + pred[keep], minlength=n * n).reshape(n, n)


def pixel_accuracy(cm: np.ndarray, classes: list[int] | None = None) -> float:
    """Correct pixels over counted pixels (restricted to true classes ``classes`` if given)."""
    rows = cm if classes is None else cm[classes]
    total = rows.sum()
    correct = np.diag(cm).sum() if classes is None else cm[classes, classes].sum()
    return float(correct / total) if total else float("nan")


def iou(cm: np.ndarray) -> np.ndarray:
    """Per-class intersection over union; NaN for a class absent from both prediction and truth."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: np.ndarray, classes: list[int] | None = None) -> float:
    """Mean of the per-class IoU over ``classes`` (default all) present in truth or prediction."""
    values = iou(cm)
    if classes is not None:
        values = values[classes]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
