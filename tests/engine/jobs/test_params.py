from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from engine.jobs import ParamsError, get_kind
from engine.jobs.base import describe_params, parse_params


@dataclass(frozen=True)
class Example:
    path: str
    """Where to read."""
    steps: int = 3
    """How many steps."""
    lr: float = 0.1
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    name: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps: must be at least 1")


def test_strings_convert_by_type_hints() -> None:
    p = parse_params(Example, {"path": "x", "steps": "5", "lr": "1e-3", "flag": "yes", "mode": "b", "name": "none", "tags": "u, v"})
    assert p == Example("x", 5, 1e-3, True, "b", None, ("u", "v"))


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"path": "x", "stepz": "1"}, "unknown parameter 'stepz'; valid: path, steps"),
        ({}, "missing parameter path"),
        ({"path": "x", "steps": "many"}, "steps='many': must be a whole number"),
        ({"path": "x", "flag": "maybe"}, "flag='maybe': must be true or false"),
        ({"path": "x", "mode": "c"}, "mode='c': must be one of a, b"),
        ({"path": "x", "steps": "0"}, "steps: must be at least 1"),
    ],
)
def test_bad_params_name_the_field(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ParamsError) as err:
        parse_params(Example, raw)
    assert message in str(err.value)


def test_describe_params_reads_field_docstrings() -> None:
    rows = describe_params(Example)
    assert rows[0] == ("path", "str", "(required)", "Where to read.")
    assert rows[1] == ("steps", "int", "3", "How many steps.")


def test_unknown_kind_lists_valid_ones() -> None:
    with pytest.raises(ParamsError, match="unknown job kind 'nope'; valid: .*ingest-captions"):
        get_kind("nope")


def test_every_registered_kind_documents_every_param() -> None:
    from engine.jobs import KINDS

    for kind in KINDS.values():
        for name, _, _, doc in describe_params(kind.params):
            assert doc, f"{kind.name}.{name} has no docstring"
