"""A throw-away local Orthanc PACS (Debian's ``orthanc`` + ``orthanc-dicomweb``) on a loopback port.

Used by the PACS tests and ``benchmarks/pacs.py``, and handy to try the app's PACS panel without a
hospital server. Orthanc gets a generated configuration: HTTP on a free loopback port, remote access
and the DICOM (DIMSE) listener off, HTTP basic authentication with one user, storage and index in a
given folder, and the DICOMweb plugin at ``/dicom-web/``.

Example::

    with LocalOrthanc(tmp_path, user="cardio", password="secret") as pacs:
        print(pacs.dicomweb_url)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from cardiovlm.tools.core.errors import CardioVLMError
from tests.loopback import free_port

ORTHANC_BINARY = "Orthanc"
DICOMWEB_PACKAGE = "orthanc-dicomweb"


class OrthancUnavailable(CardioVLMError, RuntimeError):
    """Orthanc or its DICOMweb plugin is not installed, or the server did not start."""

    code = "orthanc.unavailable"



def dicomweb_plugin() -> Path:
    """The DICOMweb plugin library installed by Debian's orthanc-dicomweb package."""
    try:
        listed = subprocess.run(["dpkg", "-L", DICOMWEB_PACKAGE], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise OrthancUnavailable(f"the {DICOMWEB_PACKAGE} package is not installed") from err
    libraries = [Path(line) for line in listed.splitlines() if "DicomWeb" in line and ".so" in line]
    existing = [p for p in libraries if p.exists()]
    if not existing:
        raise OrthancUnavailable(f"{DICOMWEB_PACKAGE} is installed but its plugin library was not found")
    return existing[0]


class LocalOrthanc:
    """Start Orthanc in ``folder`` (config, storage, index, log); stop it on exit."""

    def __init__(self, folder: str | Path, *, user: str = "cardio", password: str = "secret") -> None:
        if shutil.which(ORTHANC_BINARY) is None:
            raise OrthancUnavailable("the orthanc package is not installed (no Orthanc binary on PATH)")
        self.folder = Path(folder)
        self.user, self.password = user, password
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict:
        return {
            "Name": "CardioVLM-test", "HttpPort": self.port, "RemoteAccessAllowed": False,
            "DicomServerEnabled": False, "DicomPort": free_port(),  # DIMSE is not used; keep it off a shared port
            "StorageDirectory": str(self.folder / "storage"), "IndexDirectory": str(self.folder / "index"),
            "AuthenticationEnabled": True, "RegisteredUsers": {self.user: self.password},
            "Plugins": [str(dicomweb_plugin())], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1, "HttpTimeout": 60,
        }

    def start(self, timeout_s: float = 30) -> LocalOrthanc:
        import requests

        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps(self.config(), indent=1))
        log = open(self.folder / "orthanc.log", "wb")  # kept open for the server's life
        self.process = subprocess.Popen([ORTHANC_BINARY, str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if requests.get(f"{self.url}/system", auth=(self.user, self.password), timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        tail = (self.folder / "orthanc.log").read_text(errors="replace")[-800:]
        self.stop()
        raise OrthancUnavailable(f"Orthanc did not start on port {self.port}: {tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def __enter__(self) -> LocalOrthanc:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
