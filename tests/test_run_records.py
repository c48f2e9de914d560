"""What runs leave behind: files as readable as any other (0644), a record of where, when and on what a run
ran, no multi-hundred-megabyte checkpoint from a demo-size run, and `demo_data/` as its PROVENANCE.md says."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from search.state import atomic_write_bytes
from training.arguments import PretrainingArguments
from training.atomic_files import FILE_MODE, make_readable, write_json_atomic
from training.run_info import environment_record, git_state, is_demo_data
from training.runners import _without_checkpoint_at_the_end_of_short_runs

from conftest import DEMO_DATA, FULL_DATA


REPOSITORY = Path(__file__).resolve().parents[1]


def test_atomic_writes_give_files_the_mode_open_would(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    assert FILE_MODE == 0o666 & ~umask
    write_json_atomic(tmp_path / "results" / "a.json", {"accuracy": 0.5})
    atomic_write_bytes(tmp_path / "state.json", b"{}")  # the search's writer is the same one
    assert {path.stat().st_mode & 0o777 for path in (tmp_path / "results" / "a.json", tmp_path / "state.json")} == {FILE_MODE}
    assert not list(tmp_path.rglob("*.tmp"))


def test_make_readable_opens_what_was_created_private_and_nothing_else(tmp_path):
    (tmp_path / "private").mkdir(mode=0o700)
    (tmp_path / "private" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "private" / "model.safetensors").chmod(0o600)  # as safetensors writes it
    (tmp_path / "chosen.txt").write_bytes(b"x")
    (tmp_path / "chosen.txt").chmod(0o640)  # a mode someone chose: left alone
    make_readable(tmp_path)
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o777 & ~(0o666 & ~FILE_MODE)
    assert (tmp_path / "private" / "model.safetensors").stat().st_mode & 0o777 == FILE_MODE
    assert (tmp_path / "chosen.txt").stat().st_mode & 0o777 == 0o640


def test_the_environment_record_says_when_where_which_code_and_on_what(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = environment_record()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["timestamp"])
    assert record["cwd"] == str(tmp_path.resolve())  # the real working directory, absolute
    assert set(record["versions"]) >= {"torch", "transformers", "accelerate"} and record["versions"]["torch"]
    assert record["machine"]["accelerator"] in ("cpu", "cuda", "mps") and record["machine"]["cpu_count"] >= 1
    in_checkout = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if in_checkout.returncode == 0 and Path(in_checkout.stdout.strip()).resolve() == REPOSITORY.resolve():
        assert re.fullmatch(r"[0-9a-f]{40}", record["git"]["commit"]) and isinstance(record["git"]["uncommitted_changes"], bool)
    else:  # an installed copy or a source archive: nothing to record
        assert record["git"] is None
    assert git_state(tmp_path) is None  # not a checkout


def test_a_run_shorter_than_save_steps_writes_no_resumable_checkpoint():
    short = PretrainingArguments(output_dir="o", max_steps=30, report_to="none")
    assert _without_checkpoint_at_the_end_of_short_runs(short).save_strategy == "no"
    for kept in (PretrainingArguments(output_dir="o", max_steps=20_000, report_to="none"),
                 PretrainingArguments(output_dir="o", max_steps=30, save_steps=10, report_to="none")):
        assert _without_checkpoint_at_the_end_of_short_runs(kept).save_strategy == "steps"


def test_demo_data_is_what_its_provenance_says():
    provenance = (DEMO_DATA / "PROVENANCE.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| `[^`]+` \| [^|]+ \| `([0-9a-f]{16})…` \|$", provenance, flags=re.M)
    listed = {name for name, _ in rows}
    present = {str(path.relative_to(DEMO_DATA)) for path in DEMO_DATA.rglob("*") if path.is_file()} - {"PROVENANCE.md"}
    assert listed == present  # every file is described, every described file is there
    for name, digest in rows:
        assert hashlib.sha256((DEMO_DATA / name).read_bytes()).hexdigest().startswith(digest), name
    assert is_demo_data(DEMO_DATA / "glue" / "RTE") and not is_demo_data(REPOSITORY / "search")


@pytest.mark.skipif(not FULL_DATA.is_dir(), reason="demo_data/ is cut from the full data sets (../shared/data), which a clone does not have")
def test_make_demo_data_rebuilds_demo_data_byte_for_byte(tmp_path):
    subprocess.run([sys.executable, str(REPOSITORY / "scripts" / "make_demo_data.py"), "--source", str(FULL_DATA),
                    "--output", str(tmp_path)], check=True, capture_output=True)
    rebuilt = {path.relative_to(tmp_path): path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert rebuilt == {path.relative_to(DEMO_DATA): path.read_bytes() for path in DEMO_DATA.rglob("*") if path.is_file()}
