"""The layering of DESIGN.md, checked: engine never imports a front end, compute packages never
import the store or the jobs, and light commands do not import torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPUTE = ("datasets", "segmentation", "composition", "captioning", "evaluation")
FRONT_ENDS = ("textual", "rich", "typer", "workbench")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_engine_source_never_imports_a_front_end() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in (ROOT / "engine").rglob("*.py")
        for name in _imports(p)
        if name.split(".")[0] in FRONT_ENDS
    ]
    assert offenders == []


def test_compute_packages_never_import_store_or_jobs() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for pkg in COMPUTE
        if (ROOT / "engine" / pkg).is_dir()
        for p in (ROOT / "engine" / pkg).rglob("*.py")
        for name in _imports(p)
        if name.startswith(("engine.store", "engine.jobs"))
    ]
    assert offenders == []


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


def test_importing_the_engine_loads_no_front_end_and_no_torch() -> None:
    loaded = _loaded_after(
        "import engine.store, engine.jobs, engine.jobs.foreground, engine.datasets.synthetic, engine.workspace"
    )
    assert loaded.isdisjoint(FRONT_ENDS)
    assert "torch" not in loaded


def test_cli_start_up_does_not_import_torch() -> None:
    assert "torch" not in _loaded_after("import workbench.cli")


def test_all_sql_lives_in_the_store() -> None:
    """Front ends and jobs call engine.store; only it runs SQL (STYLE.md, point 13)."""
    import re

    sql_call = re.compile(r"(?<!self)\.(execute|executemany|query)\(")  # self.query(...) is Textual's DOM query
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for folder in ("engine", "workbench")
        for p in (ROOT / folder).rglob("*.py")
        if "store" not in p.relative_to(ROOT).parts
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if sql_call.search(line)
    ]
    assert offenders == []
