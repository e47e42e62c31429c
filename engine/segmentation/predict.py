"""Batched inference of a trained segmenter over image files.

A DataLoader decodes and resizes images in worker processes while the model runs; predictions
are resized back to each image's own size (bilinear logits, then argmax) and handed to a callback
per batch, so the caller can write masks as they come.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine.segmentation.data import InferenceSet


def predict_masks(
    model: Any,
    paths: Sequence[str],
    *,
    input_size: int,
    ignore: Sequence[int],
    on_batch: Callable[[list[int], list[np.ndarray]], None],
    batch_size: int = 16,
    num_workers: int = 2,
    device: str = "cpu",
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Predict a class-index mask (uint8, the image's own size) for every path.

    :param on_batch: called with the indices into ``paths`` and their masks
    :returns: False if stopped early
    """
    import torch
    import torch.nn.functional as F

    cuda = device.startswith("cuda")
    loader: Any = torch.utils.data.DataLoader(
        InferenceSet(paths, size=input_size),  # type: ignore[arg-type]
        batch_size=batch_size, num_workers=num_workers,
        pin_memory=cuda, persistent_workers=False,
    )
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for x, index, heights, widths in loader:
            if should_stop():
                return False
            x = x.to(device, non_blocking=True)
            if cuda:
                x = x.to(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda):
                logits = model(x).float()
            for g in ignore:
                logits[:, g] = -1e9  # never predict an ignored group (finite: resizing -inf gives NaN)
            masks = []
            same = bool((heights == heights[0]).all() and (widths == widths[0]).all())
            if same:
                h, w = int(heights[0]), int(widths[0])
                up = logits if (h, w) == tuple(logits.shape[-2:]) else F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
                masks = list(up.argmax(1).to(torch.uint8).cpu().numpy())
            else:
                for k in range(len(index)):
                    h, w = int(heights[k]), int(widths[k])
                    up = F.interpolate(logits[k : k + 1], size=(h, w), mode="bilinear", align_corners=False)
                    masks.append(up.argmax(1)[0].to(torch.uint8).cpu().numpy())
            on_batch([int(i) for i in index], masks)
    return True
