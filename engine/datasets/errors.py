"""Errors of dataset reading; each message names the file (and entry) at fault and the fix."""

from __future__ import annotations

from engine.errors import WorkbenchError


class DatasetError(WorkbenchError):
    "A dataset file or folder is malformed, incomplete or in an unknown layout."
