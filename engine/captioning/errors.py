"""Errors of captioner building, training and generation."""

from __future__ import annotations

from engine.errors import WorkbenchError


class CaptioningError(WorkbenchError):
    "A base model, checkpoint, prompt source or input cannot be used."
