"""All CardioVLM configuration in one typed place.

Every value can be set by an environment variable ``CARDIOVLM_<FIELD>`` (e.g.
``CARDIOVLM_MAX_ZIP_BYTES=1073741824``) or a ``.env`` file in the working folder. Library code takes
a ``Settings`` argument or calls :func:`get_settings`; nothing else reads the environment. The
variables of other programs that CardioVLM must agree with (TotalSegmentator's weights folder,
torchrun's ranks, Hugging Face Spaces) are read by :func:`external_environment`, and the variables
CardioVLM hands to third-party libraries are written by :func:`set_library_environment`.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
SALT_FILE = "patient_hash_salt"  # under data_dir: the per-install salt, generated once
PUBLIC_SALT = "cardiovlm-default-salt"  # the old shipped default: public, so it protects nothing

# What third-party libraries read from the environment, set in one place: every model is a local folder,
# so the Hugging Face clients never go online, and no library sends usage statistics from a hospital.
OFFLINE_HUB: dict[str, str] = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
NO_TELEMETRY: dict[str, str] = {"GRADIO_ANALYTICS_ENABLED": "False", "ANONYMIZED_TELEMETRY": "False",
                                "TOTALSEG_DISABLE_USAGE_STATS": "1"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARDIOVLM_", env_file=".env", extra="ignore")

    # --- study ingest ---
    max_zip_bytes: int = Field(2 * 1024**3, description="largest total uncompressed size of an uploaded zip")
    max_zip_members: int = Field(20_000, description="largest number of files in an uploaded zip")
    patient_hash_salt: str | None = Field(
        None, description="salt for the patient-ID hash; None: a random one generated once per install and kept "
        "in <data_dir>/patient_hash_salt (a short MRN space hashed with a public salt can be reversed)")
    uneven_spacing_tolerance_mm: float = Field(
        0.05, description="slice-gap deviation above which a series is resampled to an even grid")
    max_slice_gap_ratio: float = Field(
        2.0, description="largest slice gap, as a multiple of the median gap, that is still resampled; "
        "beyond it (slices missing) the series is refused")

    # --- data locations ---
    data_dir: Path = Field(Path.home() / ".cardiovlm", description="user data: report store, sessions")
    demo_cases_dir: Path = Field(PACKAGE_ROOT / "tools" / "demo_cases", description="bundled demo studies")
    checkpoint_dir: Path = Field(PACKAGE_ROOT / "vlm" / "checkpoint", description="shipped VLM checkpoint")
    cache_dir: Path = Field(Path.home() / ".cache" / "cardiovlm", description="files derived from shipped "
                            "data and rebuilt when missing (e.g. the question bank's embeddings)")
    vlm_min_dice: float = Field(
        0.5, ge=0.0, le=1.0, description="VLM masks are drawn only for kinds of structure whose held-out phantom "
        "Dice (the checkpoint's evaluation.json) reaches this; 0 draws every mask, even of an unevaluated checkpoint")
    vlm_min_answer_margin: float = Field(
        0.10, ge=0.0, le=1.0, description="a VLM yes/no (or multiple-choice) answer is quoted only when the "
        "checkpoint's held-out balanced accuracy for that kind of question beats its image controls (images "
        "shuffled between cases, blank and noise volumes) by at least this; 0 quotes every answer, even of an "
        "unevaluated checkpoint")

    # --- report store (chromadb) ---
    reports_dir: Path | None = Field(
        None, description="embedded report store folder; None means <data_dir>/reports")
    reports_collection: str = Field("cardiovlm_reports", description="chromadb collection holding the reports")
    chroma_host: str | None = Field(
        None, description="Chroma server host; when set, the report store uses chromadb.HttpClient")
    chroma_port: int = Field(8000, description="Chroma server port (with chroma_host)")

    # --- quantification conventions ---
    stent_landing_zone_mm: float = Field(2.5, description="healthy vessel required beyond each lesion end")
    stent_lengths_mm: tuple[float, ...] = Field(
        (8, 12, 15, 18, 20, 23, 24, 26, 28, 30, 33, 38), description="stent catalogue lengths")
    calcium_mass_calibration: float = Field(
        0.001, description="mg/(mm^3*HU) factor for the mass score; set from a calcium calibration phantom")

    # --- language models ---
    llm: str = Field("default", description="'default' (the embedded clinical planner) or "
                                            "'openai:MODEL@URL' (an OpenAI-compatible server)")
    openai_api_key: SecretStr = Field(SecretStr("not-needed"), description="API key for an OpenAI-compatible endpoint")

    # --- PACS (DICOMweb: QIDO-RS search, WADO-RS retrieve, STOW-RS send) ---
    pacs_url: str | None = Field(
        None, description="DICOMweb root of the PACS, e.g. https://pacs.example.org/dicom-web; None: no PACS")
    pacs_auth: Literal["none", "basic", "bearer"] = Field("none", description="how to authenticate to the PACS")
    pacs_username: str | None = Field(None, description="user name for basic authentication")
    pacs_password: SecretStr | None = Field(None, description="password for basic authentication")
    pacs_token: SecretStr | None = Field(None, description="token for bearer authentication")
    pacs_verify_tls: bool = Field(True, description="check the PACS server's TLS certificate (keep on)")
    pacs_ca_bundle: Path | None = Field(
        None, description="CA bundle (PEM) that signed the PACS certificate, for hospital-internal CAs")
    pacs_max_study_mb: float = Field(
        4096, description="largest series retrieved from the PACS; the transfer stops beyond it")
    pacs_timeout_s: float = Field(60, description="seconds to wait for the PACS to answer one request")

    # --- browser app ---
    ui_work_dir: Path = Field(
        Path(tempfile.gettempdir()) / "cardiovlm-ui", description="the app's working files (uploads, session "
        "outputs, Gradio's cache), one subfolder per server process; a restart deletes those of stopped servers")
    ui_session_ttl_s: int = Field(2 * 3600, description="idle seconds after which a browser session and its "
                                                         "files are deleted")
    ui_users: SecretStr | None = Field(
        None, description="logins of the browser app as 'name:password,name2:password2' (a users file, given with "
        "--users, keeps them out of the process environment)")
    ui_login_max_failures: int = Field(
        5, ge=1, description="wrong passwords for one user name within ui_login_window_s that lock that name")
    ui_login_max_failures_per_client: int = Field(
        20, ge=1, description="failed logins from one client address (any user names) that lock that address")
    ui_login_window_s: float = Field(15 * 60, gt=0, description="seconds over which failed logins are counted")
    ui_login_lockout_s: float = Field(
        15 * 60, gt=0, description="seconds a locked user name or address is refused, even with the right password")

    def model_post_init(self, __context) -> None:
        if not self.patient_hash_salt:
            self.patient_hash_salt = install_salt(self.data_dir)
        elif self.patient_hash_salt == PUBLIC_SALT:
            raise ValueError(f"CARDIOVLM_PATIENT_HASH_SALT is the public default {PUBLIC_SALT!r}: hashes made with "
                             "it can be reversed; unset it (a random per-install salt is made) or set a secret one")


def install_salt(data_dir: Path) -> str:
    """This install's patient-hash salt: read from ``data_dir``, or generated (256 random bits) and kept there.

    Raises:
        ValueError: the folder cannot be written, so no salt can be kept (set one explicitly).
    """
    path = Path(data_dir) / SALT_FILE
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # O_EXCL: two processes starting at once keep the first one's salt
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
        salt = path.read_text().strip()
    except OSError as err:
        raise ValueError(f"cannot keep the patient-hash salt in {path} ({err.strerror}): make the folder writable "
                         "or set CARDIOVLM_PATIENT_HASH_SALT to a secret value") from err
    if len(salt) < 32:
        raise ValueError(f"the patient-hash salt in {path} is too short to be secret; "
                         "delete the file to make a new one")
    return salt


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


class ExternalEnvironment(BaseSettings):
    """Variables that belong to other programs, read so that CardioVLM agrees with them."""

    # An empty variable counts as unset, as in the programs that own them.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    totalseg_weights_path: Path | None = Field(
        None, validation_alias=AliasChoices("TOTALSEG_WEIGHTS_PATH", "totalseg_weights_path"),
        description="TotalSegmentator's weights folder when set; else <totalseg_home_dir>/nnunet/results")
    totalseg_home_dir: Path = Field(
        Path.home() / ".totalsegmentator", validation_alias=AliasChoices("TOTALSEG_HOME_DIR", "totalseg_home_dir"),
        description="TotalSegmentator's home folder")
    space_id: str | None = Field(
        None, validation_alias=AliasChoices("SPACE_ID", "space_id"),
        description="set by Hugging Face Spaces, where the app serves on all interfaces behind the Space's login")
    # torchrun's process coordinates; a plain run is rank 0 of 1
    rank: int = Field(0, ge=0, validation_alias=AliasChoices("RANK", "rank"))
    world_size: int = Field(1, ge=1, validation_alias=AliasChoices("WORLD_SIZE", "world_size"))
    local_rank: int = Field(0, ge=0, validation_alias=AliasChoices("LOCAL_RANK", "local_rank"))

    @property
    def totalseg_weights_dir(self) -> Path:
        """Where TotalSegmentator looks for its weights."""
        return self.totalseg_weights_path or self.totalseg_home_dir / "nnunet" / "results"


def external_environment() -> ExternalEnvironment:
    """The other programs' variables as they are now (not cached: a launcher or a test may change them)."""
    return ExternalEnvironment()


def set_library_environment(values: Mapping[str, str], *, override: bool = False) -> None:
    """Hand ``values`` to third-party libraries that read them from the environment (e.g. :data:`OFFLINE_HUB`).

    Call before the library is imported. A value already set by the user is kept, unless ``override``
    (for the settings that keep patient data out of places it must not go).
    """
    for name, value in values.items():
        if override:
            os.environ[name] = value
        else:
            os.environ.setdefault(name, value)
