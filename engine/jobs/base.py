"""The job-kind interface: a frozen params dataclass, a context, and a ``run`` function.

Every kind runs the same way in the foreground (``workbench run KIND``) and, later, under the
durable runner: only the context's callbacks differ. Params arrive as ``key=value`` strings from
the CLI or a form and are converted by the dataclass's type hints, then validated by its
``__post_init__``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import logging
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import sqlite_utils

from engine.config import Config
from engine.errors import WorkbenchError
from engine.workspace import Workspace


class ParamsError(WorkbenchError):
    "A job parameter is unknown, missing or invalid."


class JobStopped(Exception):
    "Raised by a job that saw should_stop(); the runner records it as cancelled."


@dataclass(frozen=True)
class Progress:
    """One progress report of a running job."""

    step: int
    total: int | None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    """Numbers to keep for curves (loss, lr, miou, ...); reports with metrics are never merged away."""


@dataclass(frozen=True)
class JobResult:
    """What a job reports when it ends."""

    message: str
    """One line for the user."""
    run_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    """Structured figures (counts, metrics) for callers and tests."""


@dataclass
class JobContext:
    """What a running job may use: the store, the workspace, a logger, progress and stop checks."""

    workspace: Workspace
    db: sqlite_utils.Database
    log: logging.Logger
    on_progress: Callable[[Progress], None] = lambda p: None
    stop_requested: Callable[[], bool] = lambda: False
    job_id: int | None = None
    rank: int = 0
    """This process's rank among a data-parallel job's processes: only rank 0 writes the store."""
    world: int = 1
    """How many processes run the job."""
    on_run: Callable[[int], None] = lambda run_id: None
    """Told the run a job works on as soon as it exists (a queued job's row then names it, so every
    attempt's progress belongs to the run, not only the one that succeeded)."""

    def progress(self, step: int, total: int | None = None, message: str = "", **metrics: float) -> None:
        self.on_progress(Progress(step, total, message, {k: float(v) for k, v in metrics.items()}))

    @property
    def main(self) -> bool:
        """True in the one process that writes the store (always, unless the job is data-parallel)."""
        return self.rank == 0

    def attach_run(self, run_id: int) -> None:
        if self.main:
            self.on_run(run_id)

    def should_stop(self) -> bool:
        return self.stop_requested()

    def check_stop(self) -> None:
        """Raise :class:`JobStopped` if a stop was requested."""
        if self.stop_requested():
            raise JobStopped()

    def config(self) -> Config:
        return self.workspace.config()


@dataclass(frozen=True)
class JobKind:
    """A registered kind of job."""

    name: str
    params: type
    """The frozen params dataclass."""
    run: Callable[[Any, JobContext], JobResult]
    summary: str
    uses_gpu: bool = False
    """Whether it runs on GPUs where there are some (then each of its processes gets its own)."""
    gpus: Callable[[Any], int] | None = None
    """GPUs a job needs given its params (default: one per data-parallel process of a GPU kind)."""

    def gpus_needed(self, params: Any) -> int:
        if self.gpus is not None:
            return self.gpus(params)
        return processes_of(params) if self.uses_gpu else 0

    def parse(self, raw: Mapping[str, Any]) -> Any:
        """Build validated params from strings (CLI, forms) or typed values.

        :raises ParamsError: naming the parameter at fault and the valid names
        """
        return parse_params(self.params, raw, kind=self.name)


def processes_of(params: Any) -> int:
    """Data-parallel processes a job runs as (``processes=N`` of the training kinds; else 1)."""
    return int(getattr(params, "processes", 1) or 1)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def convert(name: str, tp: Any, value: Any) -> Any:
    """Convert one ``key=value`` string to the field's type."""
    optional, inner = _is_optional(tp)
    if not isinstance(value, str):
        return value
    if optional and value.strip().lower() in ("", "none", "null"):
        return None
    if typing.get_origin(inner) is typing.Literal:
        choices = typing.get_args(inner)
        if value not in choices:
            raise ParamsError(f"{name}={value!r}: must be one of {', '.join(map(str, choices))}")
        return value
    try:
        if inner is bool:
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if inner is int:
            return int(value)
        if inner is float:
            return float(value)
        if typing.get_origin(inner) is tuple:
            item = typing.get_args(inner)[0]
            return tuple(convert(name, item, v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        kind = {bool: "true or false", int: "a whole number", float: "a number"}.get(inner, str(inner))
        raise ParamsError(f"{name}={value!r}: must be {kind}") from None
    return value


def parse_params(cls: type, raw: Mapping[str, Any], *, kind: str = "") -> Any:
    """Build and validate a params dataclass from a mapping of names to strings or values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    where = f"{kind}: " if kind else ""
    unknown = [k for k in raw if k.replace("-", "_") not in fields]
    if unknown:
        raise ParamsError(f"{where}unknown parameter {unknown[0]!r}; valid: {', '.join(fields)}")
    values = {k.replace("-", "_"): convert(k, hints[k.replace("-", "_")], v) for k, v in raw.items()}
    missing = [
        n for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ParamsError(f"{where}missing parameter {', '.join(missing)} (give it as --param {missing[0]}=...)")
    try:
        return cls(**values)
    except ValueError as exc:
        raise ParamsError(f"{where}{exc}") from exc


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings written under each field of a dataclass (for help and forms)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def describe_params(cls: type) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, help)`` for every field, in declaration order."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = "" if f.default is None else str(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = str(f.default_factory())
        else:
            default = "(required)"
        tp = hints[f.name]
        _, inner = _is_optional(tp)
        type_name = getattr(inner, "__name__", str(inner)).replace("typing.", "")
        rows.append((f.name, type_name, default, docs.get(f.name, "")))
    return rows
