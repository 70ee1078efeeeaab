"""Secrets in the settings: a per-install patient-hash salt, and keys that never print."""

from __future__ import annotations

import os
import stat

import pytest

from cardiovlm.tools.core.settings import PUBLIC_SALT, SALT_FILE, Settings
from cardiovlm.tools.ingest.study_value import hash_patient_id


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


def test_other_programs_variables_are_read_as_those_programs_read_them(monkeypatch, tmp_path):
    from cardiovlm.tools.core.settings import external_environment

    for name in ("TOTALSEG_WEIGHTS_PATH", "TOTALSEG_HOME_DIR", "SPACE_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    plain = external_environment()
    assert (plain.rank, plain.world_size, plain.local_rank, plain.space_id) == (0, 1, 0, None)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", "")  # empty: unset, as TotalSegmentator takes it
    assert external_environment().totalseg_weights_dir == tmp_path / "home" / "nnunet" / "results"
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "weights"))  # wins over the home folder
    assert external_environment().totalseg_weights_dir == tmp_path / "weights"
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (external_environment().rank, external_environment().world_size) == (3, 4)


def test_library_variables_keep_the_users_choice_unless_overridden(monkeypatch):
    from cardiovlm.tools.core.settings import OFFLINE_HUB, set_library_environment

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    set_library_environment(OFFLINE_HUB)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    set_library_environment(OFFLINE_HUB, override=True)
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
