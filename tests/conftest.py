"""Shared fixtures: synthetic instances, a project secret, and access to ../shared."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from scrubber.deid import DeidConfig, Deidentifier, KeyStore
from scrubber.samples import SamplePatient, build_instance, sample_patients

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"
REFERENCE = SHARED / "reference"
SECRET = b"test-secret-0123456789abcdef-0123456789"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_shared(path: Path, what: str) -> Path:
    """Return ``path``, or skip (locally) / fail (under CI) when ../shared lacks it."""
    if path.exists():
        return path
    message = (
        f"{what} is not at {path}: check out the project with ../shared beside it "
        "(the corpus and the reference tables live there, never in this repository)."
    )
    if in_ci():
        pytest.fail(message + " CI must have it.")
    pytest.skip(message)


def require_tool(name: str) -> str:
    """Return the path of an external tool, or skip (locally) / fail (under CI)."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (Debian package dicom3tools); .ci/run installs it."
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def require_training_extra(*modules: str) -> None:
    """Skip (locally) or fail (under CI) when a package of the ``train`` extra is absent.

    Parameters
    ----------
    *modules : str
        Import names needed (``torch``, ``skimage``, ``nilearn``, ``nibabel``).
    """
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = (
        f"{', '.join(missing)} not installed: training tests need the train extra. Run "
        "`make train-setup` (installs the pinned torch from the local wheel store and "
        "`.[dev,train]`); .ci/run does this before `make test`."
    )
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def require_ray() -> None:
    """Skip (locally) or fail (under CI) when Ray, the ``ray`` extra, is absent."""
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        return
    message = "ray is not installed: `make train-setup` installs the ray extra; .ci/run does."
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def require_torch() -> None:
    """Skip (locally) or fail (under CI) when torch, needed only for training, is absent."""
    require_training_extra("torch", "skimage", "nilearn", "nibabel")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "corpus" in parts:
            item.add_marker(pytest.mark.corpus)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def patient() -> SamplePatient:
    return sample_patients(1, seed=7)[0]


@pytest.fixture
def instance(patient: SamplePatient) -> Dataset:
    return build_instance(patient, modality="CT")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyStore]:
    with KeyStore(tmp_path / "keys" / "reid-key.sqlite", "TEST") as key:
        yield key


@pytest.fixture
def deidentifier(store: KeyStore) -> Deidentifier:
    return Deidentifier(DeidConfig(project="TEST"), SECRET, store)
