"""The root of the engine's error hierarchy.

Every error a user can cause derives from :class:`WorkbenchError`; front ends catch it and show
its message as one line (CLI: stderr, exit 1; TUI: an error modal). Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    "A problem the user can fix; the message names the file or field and what to do."


class ConfigError(WorkbenchError):
    "config.toml is unreadable or inconsistent."


class WorkspaceError(WorkbenchError):
    "The workspace folder is missing, not initialised, or not writable."
