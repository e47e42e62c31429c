"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no effect elsewhere).

    Used by the runner's job children and by worker pools (image probes), so a ``kill -9`` of the
    parent leaves no orphan holding its pipes. PR_SET_PDEATHSIG follows the thread that forked the
    child, so pools are created by the thread that waits for them.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)
