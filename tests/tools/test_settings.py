"""Secrets in the settings: a per-install patient-hash salt, and keys that never print."""

from __future__ import annotations

import stat

import pytest

from tools.settings import PUBLIC_SALT, SALT_FILE, Settings
from tools.study import hash_patient_id


def test_the_patient_hash_salt_is_random_per_install_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("CARDIOVLM_PATIENT_HASH_SALT", raising=False)
    site_a, again, site_b = Settings(data_dir=tmp_path / "a"), Settings(data_dir=tmp_path / "a"), \
        Settings(data_dir=tmp_path / "b")
    assert site_a.patient_hash_salt == again.patient_hash_salt != site_b.patient_hash_salt
    assert len(site_a.patient_hash_salt) == 64 and site_a.patient_hash_salt != PUBLIC_SALT
    assert stat.S_IMODE((tmp_path / "a" / SALT_FILE).stat().st_mode) == 0o600
    # The same MRN hashes differently at two installs, so a table built from one reverses nothing at the other.
    assert hash_patient_id("1234567", site_a.patient_hash_salt) != hash_patient_id("1234567", site_b.patient_hash_salt)


def test_the_public_default_salt_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDIOVLM_PATIENT_HASH_SALT", PUBLIC_SALT)
    with pytest.raises(ValueError, match="public default"):
        Settings(data_dir=tmp_path)


def test_an_unwritable_data_folder_is_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.delenv("CARDIOVLM_PATIENT_HASH_SALT", raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot keep the patient-hash salt"):
        Settings(data_dir=blocker / "data")


def test_api_keys_are_secret_strings(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDIOVLM_OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("CARDIOVLM_PACS_PASSWORD", "pacs-secret")
    settings = Settings(data_dir=tmp_path)
    shown = repr(settings) + str(settings.model_dump())
    assert "sk-very-secret" not in shown and "pacs-secret" not in shown
    assert settings.openai_api_key.get_secret_value() == "sk-very-secret"
