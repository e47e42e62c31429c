"""Errors of segmenter building, training and inference."""

from __future__ import annotations

from engine.errors import WorkbenchError


class SegmentationError(WorkbenchError):
    "A model name, checkpoint or input cannot be used."
