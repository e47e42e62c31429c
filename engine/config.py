"""The workspace's ``config.toml``: class groups, key bindings and defaults.

``init`` writes :data:`DEFAULT_CONFIG` (commented, so users can read what each entry does);
:func:`load_config` reads and validates it. The class groups map the 24 Semantic Drone Dataset
classes to the 10 groups the segmenter predicts; users may regroup them here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError

DEFAULT_CONFIG = """\
# Workbench configuration. Created by `workbench init`; edit freely.
# Lines starting with '#' are comments.

# ---------------------------------------------------------------------------------------------
# Class groups: the segmenter predicts one of these groups for every pixel.
# `classes` lists the source dataset's class names (Semantic Drone Dataset, class_dict_seg.csv)
# that fall into the group. A group with `ignore = true` is left out of the training loss and of
# the metrics (pixels nobody labelled). Order matters: the first group is class index 0 in masks.
# Every source class must appear in exactly one group.
# ---------------------------------------------------------------------------------------------
[[groups]]
name = "Unlabeled"
classes = ["unlabeled", "conflicting"]
ignore = true

[[groups]]
name = "Artificial Surface"
classes = ["paved-area", "roof"]

[[groups]]
name = "Natural Surface"
classes = ["dirt", "gravel", "rocks"]

[[groups]]
name = "Water"
classes = ["water", "pool"]

[[groups]]
name = "Vegetation"
classes = ["grass", "vegetation", "tree", "bald-tree"]

[[groups]]
name = "Building"
classes = ["wall", "window", "door"]

[[groups]]
name = "Fences & Poles"
classes = ["fence", "fence-pole"]

[[groups]]
name = "People & Animals"
classes = ["person", "dog"]

[[groups]]
name = "Vehicles"
classes = ["car", "bicycle"]

[[groups]]
name = "Markers & Obstacles"
classes = ["ar-marker", "obstacle"]

# ---------------------------------------------------------------------------------------------
# Defaults used when a command or job does not say otherwise.
# ---------------------------------------------------------------------------------------------
[defaults]
# Jobs that run on the CPU at the same time (GPU jobs always run one per GPU).
cpu_jobs = 1
# How images are drawn in the TUI: auto, tgp (kitty), sixel, halfcell, off.
images = "auto"

# ---------------------------------------------------------------------------------------------
# Where jobs run: "local" (this machine's runner; each GPU job gets its own GPUs through
# CUDA_VISIBLE_DEVICES) or "slurm" (every job is submitted with sbatch). `--executor` on
# `workbench jobs submit` and `workbench demo` chooses per call. README: "Running on a Slurm cluster".
# ---------------------------------------------------------------------------------------------
[executor]
name = "local"

# The database's journal: "wal" (readers never wait; needs every writer on one host) or
# "delete" (for Slurm jobs on other nodes writing the workspace on a shared file system).
# [store]
# journal = "delete"

# Slurm resources of every job; [slurm.kinds.KIND] changes them for one kind. GPUs: a GPU kind
# asks for one per data-parallel process where the partition has GPUs, unless `gpus` says otherwise.
# [slurm]
# partition = "gpu"
# account = "my-project"
# qos = ""
# time = "1-00:00:00"
# cpus = 4
# memory = "16G"
# extra = ["--constraint=a100"]
#
# [slurm.kinds.train-captioner]
# time = "2-00:00:00"
# memory = "64G"

# ---------------------------------------------------------------------------------------------
# Review queues. overlap: the share of each reviewer's items (ratings and comparisons alike) that
# someone else judged too; a reviewer is served items others judged first until that share is
# reached, the rest in a random order seeded per reviewer. 0 (the default): every reviewer gets
# their items in filename order, the ones they have not judged first.
# ---------------------------------------------------------------------------------------------
# [review]
# overlap = 0.2

# ---------------------------------------------------------------------------------------------
# Key bindings of the TUI: action = "key" (Textual key names, e.g. "ctrl+s", "f2").
# Uncomment a line to change a key; README.md ("The TUI") lists every action.
# ---------------------------------------------------------------------------------------------
[keys]
# browse = "b"
# review = "r"
# jobs = "j"
# runs = "u"
# export = "e"
"""


@dataclass(frozen=True)
class ClassGroup:
    """One segmenter output class: a named set of source-dataset classes."""

    name: str
    """Shown in legends, compositions and prompts."""
    classes: tuple[str, ...]
    """Source class names (drone dataset) mapped to this group."""
    ignore: bool = False
    """Left out of the loss and the metrics (unlabelled pixels)."""


@dataclass(frozen=True)
class SlurmResources:
    """What a Slurm job asks for (empty strings and zeros: the cluster's defaults)."""

    partition: str = ""
    account: str = ""
    qos: str = ""
    time: str = ""
    """sbatch --time: minutes, or [days-]hours:minutes:seconds."""
    cpus: int = 0
    """sbatch --cpus-per-task."""
    memory: str = ""
    """sbatch --mem, e.g. 16G."""
    gpus: int | None = None
    """GPUs (--gres=gpu:N); None: what the job kind needs (one per data-parallel process of a GPU
    kind) where the cluster has GPUs, none where it has not."""
    extra: tuple[str, ...] = ()
    """Further sbatch arguments, as given."""

    def over(self, base: SlurmResources) -> SlurmResources:
        """These resources where they are set, ``base``'s elsewhere."""
        fields = {f: getattr(self, f) or getattr(base, f) for f in ("partition", "account", "qos", "time", "cpus", "memory")}
        return SlurmResources(**fields, gpus=self.gpus if self.gpus is not None else base.gpus, extra=(*base.extra, *self.extra))


SLURM_FIELDS = {"partition": str, "account": str, "qos": str, "time": str, "cpus": int, "memory": str, "gpus": int, "extra": list}
EXECUTORS = ("local", "slurm")
JOURNALS = ("wal", "delete")


def parse_slurm(raw: object, where: str) -> SlurmResources:
    """:raises ConfigError: naming the entry that is wrong"""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table of partition, account, qos, time, cpus, memory, gpus, extra")
    unknown = [k for k in raw if k not in SLURM_FIELDS and k != "kinds"]
    if unknown:
        raise ConfigError(f"{where}: unknown entry {unknown[0]!r}; valid: {', '.join(SLURM_FIELDS)}")
    values: dict[str, object] = {}
    for key, kind in SLURM_FIELDS.items():
        if key not in raw:
            continue
        value = raw[key]
        if kind is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}.{key}: must be a list of sbatch arguments, e.g. [\"--constraint=a100\"]")
            value = tuple(value)
        elif not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or int(value) < 0)):  # type: ignore[call-overload]
            raise ConfigError(f"{where}.{key}: must be {'a whole number >= 0' if kind is int else 'text'}")
        values[key] = value
    return SlurmResources(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Config:
    """The parsed ``config.toml``."""

    groups: tuple[ClassGroup, ...]
    """Class groups in class-index order."""
    cpu_jobs: int = 1
    """CPU jobs run at once by the runner."""
    images: str = "auto"
    """Default image protocol of the TUI."""
    keys: dict[str, str] = field(default_factory=dict)
    """Action name -> key, overriding the TUI's defaults."""
    executor: str = "local"
    """Where jobs run unless a call says otherwise: local or slurm."""
    journal: str = "wal"
    """The database's journal mode: wal, or delete for writers on several hosts."""
    slurm: SlurmResources = field(default_factory=SlurmResources)
    slurm_kinds: dict[str, SlurmResources] = field(default_factory=dict)
    review_overlap: float = 0.0
    """The share of each reviewer's items that someone else judged too ([review] overlap)."""

    def slurm_for(self, kind: str) -> SlurmResources:
        """The Slurm resources of a job kind: its own entries over the common ones."""
        own = self.slurm_kinds.get(kind)
        return own.over(self.slurm) if own else self.slurm

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    def class_to_group(self, source_classes: list[str]) -> list[int]:
        """Map each source class (by index) to its group index.

        :raises ConfigError: if a source class is in no group
        """
        lookup = {c: i for i, g in enumerate(self.groups) for c in g.classes}
        missing = [c for c in source_classes if c not in lookup]
        if missing:
            raise ConfigError(
                f"config.toml: classes {', '.join(missing)} are in no group; add them to a [[groups]] entry"
            )
        return [lookup[c] for c in source_classes]


IMAGE_MODES = ("auto", "tgp", "sixel", "halfcell", "off")
SECTIONS = ("groups", "defaults", "executor", "store", "slurm", "review", "keys")
"""The top-level tables of config.toml (a misspelt one would otherwise be ignored in silence)."""


def parse_config(text: str, source: str = "config.toml") -> Config:
    """Parse and validate config text.

    :raises ConfigError: naming the entry that is wrong
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from exc
    raw_groups = data.get("groups")
    if not isinstance(raw_groups, list) or not raw_groups:
        raise ConfigError(f"{source}: needs at least one [[groups]] entry")
    groups: list[ClassGroup] = []
    seen: dict[str, str] = {}
    for n, raw in enumerate(raw_groups, start=1):
        name = raw.get("name") if isinstance(raw, dict) else None
        classes = raw.get("classes") if isinstance(raw, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{source}: group {n} needs a name")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or not classes:
            raise ConfigError(f"{source}: group {name!r} needs `classes`, a list of class names")
        for c in classes:
            if c in seen:
                raise ConfigError(f"{source}: class {c!r} is in both {seen[c]!r} and {name!r}")
            seen[c] = name
        groups.append(ClassGroup(name=name, classes=tuple(classes), ignore=bool(raw.get("ignore", False))))
    if len({g.name for g in groups}) != len(groups):
        raise ConfigError(f"{source}: group names must be unique")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]!r} is not a section; the sections are {', '.join(SECTIONS)}")
    defaults = data.get("defaults", {})
    cpu_jobs = defaults.get("cpu_jobs", 1)
    if not isinstance(cpu_jobs, int) or cpu_jobs < 1:
        raise ConfigError(f"{source}: defaults.cpu_jobs must be a whole number >= 1")
    images = defaults.get("images", "auto")
    if images not in IMAGE_MODES:
        raise ConfigError(f"{source}: defaults.images must be one of {', '.join(IMAGE_MODES)}")
    keys = data.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise ConfigError(f"{source}: [keys] entries must be action = \"key\"")
    executor = data.get("executor", {}).get("name", "local") if isinstance(data.get("executor", {}), dict) else None
    if executor not in EXECUTORS:
        raise ConfigError(f"{source}: executor.name must be one of {', '.join(EXECUTORS)}")
    journal = data.get("store", {}).get("journal", "wal") if isinstance(data.get("store", {}), dict) else None
    if journal not in JOURNALS:
        raise ConfigError(f"{source}: store.journal must be one of {', '.join(JOURNALS)}")
    raw_slurm = data.get("slurm", {})
    slurm = parse_slurm(raw_slurm, f"{source}: [slurm]")
    kinds_raw = raw_slurm.get("kinds", {}) if isinstance(raw_slurm, dict) else {}
    if not isinstance(kinds_raw, dict):
        raise ConfigError(f"{source}: [slurm.kinds] must hold one table per job kind")
    slurm_kinds = {kind: parse_slurm(v, f"{source}: [slurm.kinds.{kind}]") for kind, v in kinds_raw.items()}
    review = data.get("review", {})
    unknown = sorted(set(review) - {"overlap"}) if isinstance(review, dict) else []
    if unknown:
        raise ConfigError(f"{source}: [review] {unknown[0]!r} is not a setting; the one there is overlap")
    overlap = review.get("overlap", 0.0) if isinstance(review, dict) else None
    if isinstance(overlap, bool) or not isinstance(overlap, int | float) or not 0 <= overlap < 1:
        raise ConfigError(f"{source}: review.overlap must be a number from 0 to below 1 (a share, e.g. 0.2)")
    return Config(groups=tuple(groups), cpu_jobs=cpu_jobs, images=images, keys=dict(keys), executor=executor, journal=journal,
                  slurm=slurm, slurm_kinds=slurm_kinds, review_overlap=float(overlap))


def load_config(path: Path) -> Config:
    """Read the config file, or the defaults when it does not exist."""
    if not path.exists():
        return parse_config(DEFAULT_CONFIG, "default config")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from exc
    return parse_config(text, str(path))
