from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import DEFAULT_CONFIG, load_config, parse_config
from engine.datasets.synthetic import CLASS_NAMES
from engine.errors import ConfigError


def test_default_config_has_the_ten_groups_covering_all_drone_classes() -> None:
    cfg = parse_config(DEFAULT_CONFIG)
    assert cfg.group_names == [
        "Unlabeled", "Artificial Surface", "Natural Surface", "Water", "Vegetation", "Building",
        "Fences & Poles", "People & Animals", "Vehicles", "Markers & Obstacles",
    ]
    mapping = cfg.class_to_group(list(CLASS_NAMES))
    assert mapping[CLASS_NAMES.index("roof")] == 1 and mapping[CLASS_NAMES.index("conflicting")] == 0
    assert [g.name for g in cfg.groups if g.ignore] == ["Unlabeled"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("[[groups]\n", "not valid TOML"),
        ("x = 1\n", "needs at least one [[groups]]"),
        ('[[groups]]\nname = "A"\nclasses = ["a"]\n[[groups]]\nname = "B"\nclasses = ["a"]\n', "'a' is in both 'A' and 'B'"),
        ('[[groups]]\nname = "A"\nclasses = ["a"]\n[defaults]\nimages = "png"\n', "defaults.images must be one of"),
        ('[[groups]]\nname = "A"\nclasses = ["a"]\n[review]\noverlap = 1.5\n', "review.overlap must be a number from 0 to below 1"),
        ('[[groups]]\nname = "A"\nclasses = ["a"]\n[review]\noverlap = "a fifth"\n', "review.overlap must be a number"),
        ('[[groups]]\nname = "A"\nclasses = ["a"]\n[review]\noverlp = 0.2\n', "[review] 'overlp' is not a setting"),
        ('[[groups]]\nname = "A"\nclasses = ["a"]\n[reveiw]\noverlap = 0.2\n', "'reveiw' is not a section; the sections are groups"),
    ],
)
def test_bad_config_names_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_config(text)


def test_class_in_no_group(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[groups]]\nname = "A"\nclasses = ["a"]\n')
    with pytest.raises(ConfigError, match="classes b are in no group"):
        load_config(path).class_to_group(["a", "b"])


def test_review_overlap_is_read() -> None:
    assert parse_config('[[groups]]\nname = "A"\nclasses = ["a"]\n[review]\noverlap = 0.2\n').review_overlap == 0.2
    assert parse_config('[[groups]]\nname = "A"\nclasses = ["a"]\n').review_overlap == 0.0
