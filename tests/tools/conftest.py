"""Fixtures for the tools tests: a real local Orthanc PACS holding two demo phantoms.

Debian's orthanc and orthanc-dicomweb are installed by ``scripts/install_test_services.sh`` (the README's
test command runs it before pytest); test code never installs anything, so when they are missing the PACS
tests skip and name that script. The phantoms are written as CT series (``cardiovlm.tools.dicom.dicom_write``) and
uploaded over STOW-RS.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.dicom.dicom_write import write_ct_series
from cardiovlm.tools.ingest.pacs import PacsClient
from cardiovlm.tools.ingest.study import load_study
from tests.orthanc_local import LocalOrthanc, OrthancUnavailable

USER, PASSWORD = "cardio", "s3cret"
# case -> (patient ID, accession number, study date) of the uploaded series
UPLOADS = {"lad_stenosis": ("PAT-LAD", "ACC-1001", "20240105"), "healthy": ("PAT-HEALTHY", "ACC-1002", "20240210")}
# What the local PACS needs; the script also installs dicom3tools, but the tests that run its dciodvfy
# check for it themselves.
DEBIAN_PACKAGES = ("orthanc", "orthanc-dicomweb")
INSTALL_SCRIPT = "scripts/install_test_services.sh"


def _installed(package: str) -> bool:
    """True when dpkg lists ``package`` as installed (a removed package keeps a "config-files" entry)."""
    try:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    except OSError:  # not a Debian system
        return False
    return status.stdout.strip() == "install ok installed"


def require_debian_packages() -> None:
    """Skip, naming the install script, when Orthanc or its DICOMweb plugin is not installed."""
    missing = [p for p in DEBIAN_PACKAGES if not _installed(p)]
    if missing:
        pytest.skip(f"Debian package(s) {', '.join(missing)} not installed: run `bash {INSTALL_SCRIPT}` "
                    "(needs apt and root) before the tests")


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """A running Orthanc holding two demo phantoms, and the DICOM folders they were uploaded from."""
    require_debian_packages()
    root = tmp_path_factory.mktemp("orthanc")
    try:
        server = LocalOrthanc(root / "server", user=USER, password=PASSWORD).start()
    except OrthancUnavailable as err:
        pytest.skip(str(err))
    client = PacsClient(server.dicomweb_url, auth="basic", username=USER, password=PASSWORD)
    folders = {}
    for case, (patient_id, accession, date) in UPLOADS.items():
        study = load_study(get_settings().demo_cases_dir / case / "ccta.nii.gz")
        folder = root / "files" / case
        write_ct_series(study.hu, study.affine, folder, series_description=f"CCTA {case}", uid_seed=case,
                        patient_id=patient_id, study_date=date, patient_name=f"Phantom^{case}")
        _set_accession(folder, accession)
        assert client.send_files([folder]) == len(list(folder.iterdir()))
        folders[case] = folder
    yield server, client, folders
    server.stop()


def _set_accession(folder: Path, accession: str) -> None:
    import pydicom

    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.AccessionNumber = accession
        ds.save_as(path)


@pytest.fixture
def pacs_env(pacs, monkeypatch):
    """Settings pointing at the test Orthanc, as a site would set them (credentials from the environment)."""
    server, _, _ = pacs
    for key, value in {"URL": server.dicomweb_url, "AUTH": "basic", "USERNAME": USER, "PASSWORD": PASSWORD}.items():
        monkeypatch.setenv(f"CARDIOVLM_PACS_{key}", value)
    get_settings.cache_clear()
    yield server
    get_settings.cache_clear()
