"""The batch job behind ``scrubber deid``: order, failures and interruption."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from scrubber.deid import DeidConfig, Deidentifier
from scrubber.runner import DeidJob, FileStatus
from scrubber.samples import write_samples
from tests.conftest import SECRET


@pytest.fixture
def job(tmp_path: Path) -> DeidJob:
    write_samples(tmp_path / "in", patients=3, seed=6)
    (tmp_path / "in" / "zz-notes.txt").write_text("not DICOM")
    deid = Deidentifier(DeidConfig(project="JOB"), SECRET, None)
    return DeidJob(deid, tmp_path / "in", tmp_path / "out")


def test_outcomes_come_in_plan_order_once_files_are_in_place(job: DeidJob) -> None:
    plan = job.plan()
    outcomes = []
    for outcome in job.run(plan):
        if outcome.status is FileStatus.DEIDENTIFIED:
            assert outcome.output is not None and outcome.output.is_file()
        outcomes.append(outcome)
    assert [o.input for o in outcomes] == [src for src, _dst in plan]
    assert [o.status for o in outcomes].count(FileStatus.SKIPPED) == 1
    assert not list(job.destination.rglob("*.tmp"))


def test_a_commit_failure_becomes_a_failed_outcome(
    job: DeidJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    real = os.replace
    calls = {"n": 0}

    def flaky(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    outcomes = list(job.run(job.plan()))
    failed = [o for o in outcomes if o.status is FileStatus.FAILED]
    assert len(failed) == 1 and failed[0].reason == "output"
    assert "No space left" in (failed[0].message or "")
    assert not list(job.destination.rglob("*.tmp"))
    done = [o for o in outcomes if o.status is FileStatus.DEIDENTIFIED]
    assert sorted(p.relative_to(job.destination) for p in job.destination.rglob("*.dcm")) == sorted(
        o.output.relative_to(job.destination) for o in done if o.output is not None
    )


def test_stopping_early_leaves_no_temporary_files(job: DeidJob) -> None:
    run = job.run(job.plan())
    for _ in range(4):
        next(run)
    assert isinstance(run, Generator)
    run.close()
    assert not list(job.destination.rglob("*.tmp"))
