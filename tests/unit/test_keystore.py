"""The re-identification key: permissions, pseudonym indices, secrets, export."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from scrubber.deid import KeyStore, resolve_secret
from scrubber.deid.project_secret import SECRET_ENV
from scrubber.errors import ConfigError, KeyStoreError


def test_key_file_and_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "reid-key.sqlite"
    with KeyStore(path, "P1") as store:
        store.patient_index("id:|123")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for companion in path.parent.glob("reid-key.sqlite-*"):
        assert stat.S_IMODE(companion.stat().st_mode) & 0o077 == 0


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite"
    KeyStore(path, "P1").close()
    path.chmod(0o644)
    KeyStore(path, "P1").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_patient_indices_are_assigned_once_in_order_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite"
    with KeyStore(path, "P1") as store:
        assert store.patient_index("a") == 1
        assert store.patient_index("b") == 2
        assert store.patient_index("a") == 1
    with KeyStore(path, "P1") as store:
        assert store.patient_index("c") == 3
        assert store.patient_index("b") == 2


def test_a_key_of_another_project_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite"
    KeyStore(path, "P1").close()
    with pytest.raises(KeyStoreError, match="another project"):
        KeyStore(path, "P2")


def test_generated_secret_is_stored_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    path = tmp_path / "k.sqlite"
    with KeyStore(path, "P1") as store:
        secret, source = resolve_secret(store)
        assert source == "generated" and len(secret) >= 32
    with KeyStore(path, "P1") as store:
        assert resolve_secret(store) == (secret, "key")


def test_a_different_secret_is_refused_and_given_secrets_are_not_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k.sqlite"
    monkeypatch.setenv(SECRET_ENV, "first-secret-0123456789")
    with KeyStore(path, "P1") as store:
        assert resolve_secret(store) == (b"first-secret-0123456789", "environment")
        assert store.stored_secret() is None
    monkeypatch.setenv(SECRET_ENV, "other-secret-0123456789")
    with KeyStore(path, "P1") as store, pytest.raises(KeyStoreError, match="differs"):
        resolve_secret(store)


def test_secret_file_must_be_private_and_long(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("short")
    secret_file.chmod(0o600)
    with KeyStore(tmp_path / "k.sqlite", "P1") as store:
        with pytest.raises(ConfigError, match="shorter than 16"):
            resolve_secret(store, secret_file)
        secret_file.write_text("long-enough-secret-value\n")
        secret_file.chmod(0o644)
        with pytest.raises(ConfigError, match="chmod 600"):
            resolve_secret(store, secret_file)
        secret_file.chmod(0o600)
        assert resolve_secret(store, secret_file) == (b"long-enough-secret-value", "file")


def test_export_csv_per_kind(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "k.sqlite", "P1") as store:
        store.record("patient_id", "MRN1", "P1_001")
        store.record("study_uid", "1.2.3", "2.25.9")
        store.record("uid", "1.2.4", "2.25.8")
        store.record("uid", "1.2.4", "2.25.8")
        buffer = io.StringIO()
        assert store.export_csv("patient_id", buffer) == 1
        assert buffer.getvalue() == "id_old,id_new\nMRN1,P1_001\n"
        buffer = io.StringIO()
        assert store.export_csv("uid", buffer) == 2  # every UID kind
        with pytest.raises(KeyStoreError, match="Unknown mapping kind"):
            store.export_csv("names", io.StringIO())
        assert store.counts()["uid"] == 1
