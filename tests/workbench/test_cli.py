"""The CLI through typer's runner: commands, messages and exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workbench.cli import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    ws = tmp_path / "ws"

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["--workspace", str(ws), *args])

    return invoke


def test_init_then_stats_empty(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("init")
    assert result.exit_code == 0 and "created" in result.output
    assert "already initialised" in cli("init").output
    result = cli("stats")
    assert result.exit_code == 0 and "no datasets yet" in result.output


def test_stats_without_workspace_is_one_line_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("stats")
    assert result.exit_code == 1
    assert result.output.strip().startswith("error:") and "workbench init" in result.output
    assert "Traceback" not in result.output


def test_ingest_rsicd_sample_and_stats(cli, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", "captions", str(shared_data / "rsicd-sample"))
    assert result.exit_code == 0, result.output
    assert "rsicd: 17 images (train 17), 85 captions" in result.output
    result = cli("stats", "rsicd")
    assert result.exit_code == 0
    assert re.search(r"images\s+17\s+train 17", result.output)
    assert re.search(r"captions\s+85", result.output)
    result = cli("stats", "nope")
    assert result.exit_code == 1 and "no dataset named 'nope' (datasets: rsicd)" in result.output


def test_ingest_ucm_missing_then_allow_missing(cli, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    cli("init")
    result = cli("ingest", "captions", str(shared_data / "ucm-captions"))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "2091 missing" in lines[0] and "--allow-missing" in lines[0]
    result = cli("ingest", "captions", str(shared_data / "ucm-captions"), "--allow-missing")
    assert result.exit_code == 0 and "2091 missing" in result.output


def test_run_lists_kinds_params_and_rejects_bad_params(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert "ingest-captions" in cli("run").output
    result = cli("run", "synthesize", "--params")
    assert "drone_images" in result.output and "Drone-style images" in result.output
    result = cli("run", "synthesize", "--param", "images=lots")
    assert result.exit_code == 1 and "images='lots': must be a whole number" in result.output
    result = cli("run", "synthesize", "--param", "images")
    assert result.exit_code == 1 and "write it as key=value" in result.output
    result = cli("run", "nope")
    assert result.exit_code == 1 and "unknown job kind 'nope'" in result.output


def test_run_synthesize_then_ingest(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "syn"
    result = cli("run", "synthesize", "-p", f"out={out}", "-p", "images=16", "-p", "drone_images=4", "-p", "size=48", "-p", "drone_size=48")
    assert result.exit_code == 0, result.output
    result = cli("run", "ingest-captions", "-p", f"path={out / 'captions'}")
    assert result.exit_code == 0 and "synthetic: 16 images" in result.output
    result = cli("ingest", "drone", str(out / "drone"), "--name", "d")
    assert result.exit_code == 0 and "d: 4 images with masks" in result.output


def test_demo_draws_ingests_and_queues_the_pipeline(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("demo", "--images", "16", "--drone-images", "4", "--no-follow", "--no-runner")
    assert result.exit_code == 0, result.output
    assert "synthetic: 16 images" in result.output and "synthetic-drone: 4 images" in result.output
    assert "not real imagery" in result.output
    for kind in ("train-segmenter", "segment", "compose", "train-captioner", "generate", "evaluate", "baseline-knn"):
        assert f" {kind}" in result.output
    assert "(after #1)" in result.output
    listing = cli("jobs", "list")
    assert listing.exit_code == 0 and "train-segmenter" in listing.output


@pytest.mark.slow
def test_demo_fresh_starts_new_versions_and_keeps_what_was_rated(cli) -> None:  # type: ignore[no-untyped-def]
    """The demo wires its steps by run family: a fresh rerun gives every run a new version, and the
    rated captions of the first run (and their dataset) stay as they were."""
    args = ("demo", "--fast", "--images", "24", "--drone-images", "6", "--no-tui")
    first = cli(*args)
    assert first.exit_code == 0, first.output
    assert "eval.gen.cap.test\n" in first.output and "eval.knn.compose.seg.synthetic.test\n" in first.output
    rated = cli("rate", "1", "4", "--note", "keep me", "--flag", "grammar")
    assert rated.exit_code == 0, rated.output
    again = cli(*args, "--fresh")
    assert again.exit_code == 0, again.output
    assert "the dataset it replaced holds 1 rating and is kept as synthetic~1, with its runs" in again.output
    assert "eval.gen.cap.test.2\n" in again.output and "jobs did not succeed" not in again.output
    listing = cli("runs", "list").output
    for family in ("seg", "cap", "gen.cap.test", "eval.gen.cap.test", "knn.compose.seg.synthetic.test"):
        assert re.search(rf"^{re.escape(family)}\s+1\s", listing, re.M) and re.search(rf"^{re.escape(family)}\.2\s+2\s", listing, re.M), family
    ratings = cli("ratings", "gen.cap.test@1").output
    assert "1 images rated by 1 reviewers" in ratings and "grammar 1" in ratings
    again_no_fresh = cli(*args)
    assert again_no_fresh.output.count("done already") == 12


def _commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    names = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        names += [f"{name} {s}" for s in sub] if sub else [name]
    return names


def test_every_command_has_help_and_is_in_the_readme() -> None:
    import typer.main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    for name in _commands():
        parts = name.split()
        cmd = group.commands[parts[0]]  # type: ignore[attr-defined]
        if len(parts) > 1:
            cmd = cmd.commands[parts[1]]
        assert cmd.help, f"`workbench {name}` has no help text"
        assert f"workbench {name}" in readme, f"`workbench {name}` is not in README.md"


def test_runs_list_and_show(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("init")
    assert "no runs yet" in cli("runs", "list").output
    cli("run", "synthesize", "-p", f"out={tmp_path / 'ws' / 'synthetic'}", "-p", "images=16", "-p", "drone_images=0")
    cli("ingest", "captions", str(tmp_path / "ws" / "synthetic" / "captions"))
    ws = tmp_path / "ws"
    result = cli("run", "compose", "-p", "dataset=synthetic", "-p", f"masks={ws / 'synthetic' / 'captions' / 'masks'}")
    assert result.exit_code == 0, result.output
    listing = cli("runs", "list").output
    assert "compose.synthetic-gt" in listing and "composition" in listing and "images 16" in listing
    shown = cli("runs", "show", "compose.synthetic-gt", "--samples", "1").output
    assert "prompt_version" in shown and "dominant" in shown
    missing = cli("runs", "show", "nope")
    assert missing.exit_code == 1 and "no run named 'nope' (runs: compose.synthetic-gt)" in missing.output


def test_evaluate_export_rate_ratings_compare_from_the_cli(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    cli("run", "synthesize", "-p", f"out={tmp_path / 'ws' / 'synthetic'}", "-p", "images=16", "-p", "drone_images=0")
    cli("ingest", "captions", str(tmp_path / "ws" / "synthetic" / "captions"))
    ann = json.loads((tmp_path / "ws" / "synthetic" / "captions" / "dataset_synthetic.json").read_text())["images"]
    results = tmp_path / "mine.json"
    results.write_text(json.dumps([{"image_id": e["filename"], "caption": e["sentences"][1]["raw"]} for e in ann]))
    assert cli("run", "import-generations", "-p", f"results={results}", "-p", "dataset=synthetic").exit_code == 0
    result = cli("run", "evaluate", "-p", "generation=mine", "-p", "tokenizer=python", "-p", "resamples=100")
    assert result.exit_code == 0, result.output
    assert "95% interval" in result.output and "CIDEr" in result.output and "scene" in result.output
    assert "METEOR        n/a   METEOR runs on Java" in result.output
    out = tmp_path / "mine.jsonl"
    assert cli("export", "mine", "-o", str(out)).exit_code == 0
    again = cli("export", "mine", "-o", str(out))
    assert again.exit_code == 1 and "exists; pass --force" in again.output
    first = json.loads(out.read_text().splitlines()[0])
    entry = next(e for e in ann if e["filename"] == first["filename"])
    assert first["image_id"] == entry["imgid"] and isinstance(first["image_id"], int) and first["run"] == "mine"  # Karpathy imgid, an int
    rated = cli("rate", str(first["generation_id"]), "4", "--flag", "grammar", "--reviewer", "ann")
    assert rated.exit_code == 0, rated.output
    assert f"rated caption {first['generation_id']} of run mine on {first['filename']}" in rated.output and "grammar" in rated.output
    by_name = cli("rate", "mine", ann[1]["filename"], "3", "--reviewer", "bob")
    assert by_name.exit_code == 0 and f"of run mine on {ann[1]['filename']}" in by_name.output
    by_stem = cli("rate", "mine", ann[2]["filename"].rsplit(".", 1)[0], "2", "--reviewer", "bob")  # no extension: one file has that stem
    assert by_stem.exit_code == 0 and f"of run mine on {ann[2]['filename']}" in by_stem.output
    for args, message in ((("mine", "nosuch.jpg", "3"), "run 'mine' has no caption of an image 'nosuch.jpg'"),
                          (("nosuch", "x.jpg", "3"), "'nosuch' is not a generation or baseline run"),
                          (("9999", "3"), "no generated caption with id 9999"),
                          ((str(first["generation_id"]), "7"), "must be 1 to 5"),
                          (("mine", "4"), "'mine' is not a generation id"),
                          (("4",), "give RUN IMAGE SCORE or GENERATION_ID SCORE")):
        bad = cli("rate", *args)
        assert bad.exit_code == 1 and message in bad.output, (args, bad.output)
    summary_after = cli("ratings", "mine").output
    assert "3 images rated by 2 reviewers" in summary_after
    compared = cli("runs", "compare", "mine", "mine", "--resamples", "50")
    assert compared.exit_code == 1 and "are the same evaluation (eval.mine): compare two different runs" in compared.output


def test_jobs_commands(cli) -> None:  # type: ignore[no-untyped-def]
    cli("init")
    assert "no jobs yet" in cli("jobs", "list").output
    queued = cli("jobs", "submit", "noop", "-p", "seconds=0", "--no-runner")
    assert queued.exit_code == 0 and "queued job #1 (noop)" in queued.output
    bad = cli("jobs", "submit", "noop", "-p", "seconds=soon")
    assert bad.exit_code == 1 and "seconds='soon': must be a number" in bad.output
    assert "queued job #2 (noop) after #1" in cli("jobs", "submit", "noop", "--after", "1", "--no-runner").output
    shown = cli("jobs", "show", "2")
    assert "after     #1" in shown.output and "queued" in shown.output
    assert "job #2: cancelled" in cli("jobs", "cancel", "2").output
    again = cli("jobs", "cancel", "2")
    assert again.exit_code == 1 and "already cancelled" in again.output
    assert "queued job #3, a retry of #2" in cli("jobs", "retry", "2", "--no-runner").output
    assert cli("jobs", "show", "99").exit_code == 1


def test_tui_refuses_an_unknown_dataset_and_a_non_terminal(cli, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    cli("ingest", "captions", str(shared_data / "rsicd-sample"))
    unknown = cli("tui", "--dataset", "nosuch")
    assert unknown.exit_code == 1 and "--dataset 'nosuch': no captioning dataset of that name; datasets: rsicd" in unknown.output
    piped = cli("tui")  # the runner's stdout is not a terminal
    assert piped.exit_code == 1 and "the TUI needs a terminal" in piped.output and "\x1b[" not in piped.output


def test_a_read_only_workspace_reads_and_refuses_writes_in_one_line(cli, tmp_path: Path, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    """As another user would see a colleague's workspace: every file read-only for them."""
    import hashlib
    import os
    import shutil
    import subprocess
    import sys

    cli("ingest", "captions", str(shared_data / "rsicd-sample"))
    ws = tmp_path / "ws"
    (tmp_path / "g.json").write_text('[{"image_id": "00001.jpg", "caption": "a plane"}]')
    cli("run", "import-generations", "-p", f"results={tmp_path / 'g.json'}", "-p", "dataset=rsicd", "-p", "name=g")
    prefix: list[str] = []
    if os.geteuid() == 0:  # root writes anything: drop the capability that lets it
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a workspace read-only")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    for path in [ws, *ws.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    digest = hashlib.sha256((ws / "workbench.db").read_bytes()).hexdigest()
    out = tmp_path / "out"
    out.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, sys.executable, "-m", "workbench.cli", "-w", str(ws), *args], capture_output=True, text=True, timeout=120)

    try:
        stats = run("stats", "rsicd")
        assert stats.returncode == 0 and "captions" in stats.stdout, stats.stderr
        assert stats.stderr.count("read-only for you; reading only") == 1
        exported = run("export", "g", "-o", str(out / "g.jsonl"))
        assert exported.returncode == 0 and (out / "g.jsonl").is_file(), exported.stderr
        for args in (("rate", "g", "00001.jpg", "4"), ("run", "evaluate", "-p", "generation=g"), ("jobs", "submit", "noop")):
            refused = run(*args)
            lines = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
            assert refused.returncode == 1 and len(lines) == 1 and "read-only for you" in lines[0], (args, refused.stderr)
            assert "Traceback" not in refused.stderr
        assert run("jobs", "list").returncode == 0
    finally:
        for path in [ws, *ws.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert hashlib.sha256((ws / "workbench.db").read_bytes()).hexdigest() == digest
