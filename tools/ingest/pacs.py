"""Studies from a PACS over DICOMweb, and results back to it.

:class:`PacsClient` wraps ``dicomweb-client``: QIDO-RS searches (patient, accession number, date,
modality), WADO-RS retrieval of one series streamed instance by instance into a folder, and STOW-RS
sending. A retrieved series is loaded with the same :func:`cardiovlm.tools.ingest.study.load_study` as files on
disk, so ingest rules (series choice, HU rescale, LPS orientation, de-identification) are the same.

Retrieval writes into a hidden ``.partial-*`` folder that becomes the series folder only when every
instance has arrived; an error, the size limit or an interruption removes it, so a half series is
never loaded. Network and HTTP failures become :class:`PacsError` subclasses with a message a
clinician (or the hospital IT) can act on.

Example::

    client = PacsClient.from_settings()
    hits = client.search_studies(patient_id="12345", modality="CT")
    series = client.search_series(hits[0].study_uid)
    study = client.load_series(hits[0].study_uid, series[0].series_uid, dest=Path("pacs"))
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from cardiovlm.tools.core.errors import CardioVLMError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cardiovlm.tools.core.settings import Settings
    from cardiovlm.tools.ingest.study_value import Study

log = logging.getLogger(__name__)

RETRY_ATTEMPTS = 3
UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")
ProgressCallback = Callable[[int, int | None], None]  # (instances received, instances expected or None)


class PacsError(CardioVLMError):
    """Base class of every PACS failure; ``str(err)`` says what went wrong and what to check."""

    code = "pacs.failed"


class PacsNotConfiguredError(PacsError):
    """No PACS URL is set."""

    code = "pacs.not_configured"


class PacsAuthError(PacsError):
    """The PACS refused the credentials (HTTP 401 or 403)."""

    code = "pacs.auth_refused"


class PacsUnreachableError(PacsError):
    """The PACS could not be reached (refused, unknown host, timeout, connection dropped)."""

    code = "pacs.unreachable"


class PacsTlsError(PacsError):
    """The TLS handshake failed, usually an untrusted or expired server certificate."""

    code = "pacs.tls_failed"


class PacsNotFoundError(PacsError):
    """The study or series does not exist on the PACS, or holds no instances."""

    code = "pacs.not_found"


class PacsTooLargeError(PacsError):
    """The series is larger than ``settings.pacs_max_study_mb``."""

    code = "pacs.too_large"


class PacsTransferError(PacsError):
    """The PACS answered, but not as DICOMweb expects (other HTTP errors, broken multipart)."""

    code = "pacs.transfer_failed"


class PacsSession(requests.Session):
    """A session whose TLS check follows the PACS settings.

    requests lets the REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE environment variables override
    ``Session.verify``, which would silently drop CARDIOVLM_PACS_CA_BUNDLE (or turn a check that was
    switched off back on) on machines where they are set.
    """

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None:  # not set per request: the configured CA bundle or on/off decides
            merged["verify"] = self.verify
        return merged


@dataclass(frozen=True)
class StudyHit:
    """One QIDO-RS study result (PACS-side identifiers: shown to the clinician, never stored)."""

    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    accession_number: str
    modalities: str
    description: str
    n_series: int | None
    n_instances: int | None


@dataclass(frozen=True)
class SeriesHit:
    """One QIDO-RS series result."""

    study_uid: str
    series_uid: str
    modality: str
    series_number: int | None
    description: str
    n_instances: int | None


def _value(item: dict, tag: str, default=""):
    """First value of a DICOM JSON attribute (PN as its alphabetic form)."""
    values = item.get(tag, {}).get("Value") or []
    if not values:
        return default
    first = values[0]
    return first.get("Alphabetic", "") if isinstance(first, dict) else first


def _int(item: dict, tag: str) -> int | None:
    value = _value(item, tag, None)
    return int(value) if value not in (None, "") else None


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1024**2:.0f} MB"


class PacsClient:
    """A DICOMweb connection to one PACS; see the module docstring.

    Args:
        url: DICOMweb root (QIDO, WADO and STOW share it, e.g. ``http://host:8042/dicom-web``).
        auth: "none", "basic" (``username`` + ``password``) or "bearer" (``token``).
        verify_tls: check the server certificate; ``ca_bundle`` adds a hospital CA.
        max_study_mb: retrieval stops (and removes what it wrote) beyond this size.
        timeout_s: seconds to wait for each answer.

    Raises:
        PacsNotConfiguredError: no URL; ValueError: credentials missing for the chosen auth.
    """

    def __init__(self, url: str | None, *, auth: str = "none", username: str | None = None,
                 password: str | None = None, token: str | None = None, verify_tls: bool = True,
                 ca_bundle: str | Path | None = None, max_study_mb: float = 4096, timeout_s: float = 60) -> None:
        from dicomweb_client import DICOMwebClient

        if not url:
            raise PacsNotConfiguredError(
                "no PACS is configured: set CARDIOVLM_PACS_URL to the server's DICOMweb root")
        if auth not in ("none", "basic", "bearer"):
            raise ValueError(f"PACS authentication must be none, basic or bearer, not {auth!r}")
        if auth == "basic" and not (username and password):
            raise ValueError("basic PACS authentication needs CARDIOVLM_PACS_USERNAME and CARDIOVLM_PACS_PASSWORD")
        if auth == "bearer" and not token:
            raise ValueError("bearer PACS authentication needs CARDIOVLM_PACS_TOKEN")
        self.url = url.rstrip("/")
        self.server = _server_name(self.url)
        self.max_bytes = max_study_mb * 1024**2
        session = PacsSession()
        session.verify = str(ca_bundle) if (verify_tls and ca_bundle) else verify_tls
        if auth == "basic" and username and password:  # both checked above
            session.auth = (username, password)
        headers = {"Authorization": f"Bearer {token}"} if auth == "bearer" else None
        self._client = DICOMwebClient(self.url, session=session, headers=headers, timeout=timeout_s)
        # dicomweb-client retries every failed request 5 times with back-off (30 s before a refused
        # connection is reported); a clinician waiting at the screen is better served by 3 quick tries.
        self._client.set_http_retry_params(retry=True, max_attempts=RETRY_ATTEMPTS, wait_exponential_multiplier=250)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> PacsClient:
        from cardiovlm.tools.core.settings import get_settings

        s = settings or get_settings()
        secret = lambda v: v.get_secret_value() if v is not None else None  # noqa: E731
        return cls(s.pacs_url, auth=s.pacs_auth, username=s.pacs_username, password=secret(s.pacs_password),
                   token=secret(s.pacs_token), verify_tls=s.pacs_verify_tls, ca_bundle=s.pacs_ca_bundle,
                   max_study_mb=s.pacs_max_study_mb, timeout_s=s.pacs_timeout_s)

    # --- QIDO-RS ---
    def search_studies(self, *, patient_id: str | None = None, patient_name: str | None = None,
                       accession_number: str | None = None, study_date: str | None = None,
                       modality: str | None = None, limit: int = 50) -> list[StudyHit]:
        """Studies matching every given filter.

        Args:
            patient_name: DICOM wildcards allowed ("DOE*").
            study_date: ``YYYYMMDD`` or a range ``YYYYMMDD-YYYYMMDD`` (either end may be open).
            modality: "CT" matches studies holding at least one CT series (ModalitiesInStudy).
        """
        filters = {key: value for key, value in (
            ("PatientID", patient_id), ("PatientName", patient_name), ("AccessionNumber", accession_number),
            ("StudyDate", study_date), ("ModalitiesInStudy", modality),
        ) if value}
        fields = ("PatientID", "PatientName", "StudyDate", "AccessionNumber", "ModalitiesInStudy",
                  "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
        items = self._call(lambda: self._client.search_for_studies(
            search_filters=filters, fields=fields, limit=limit))
        # Which filters, never their values: a patient name or ID must not reach a log file.
        log.info("PACS %s: study search by %s found %d studies", self.server,
                 ", ".join(sorted(filters)) or "no filter", len(items))
        return [StudyHit(
            study_uid=_value(i, "0020000D"), patient_id=str(_value(i, "00100020")),
            patient_name=str(_value(i, "00100010")), study_date=str(_value(i, "00080020")),
            accession_number=str(_value(i, "00080050")),
            modalities="/".join(i.get("00080061", {}).get("Value") or []),
            description=str(_value(i, "00081030")), n_series=_int(i, "00201206"),
            n_instances=_int(i, "00201208")) for i in items]

    def search_series(self, study_uid: str, *, modality: str | None = None) -> list[SeriesHit]:
        """The series of one study, largest first (the CT angiography is usually the largest)."""
        filters = {"Modality": modality} if modality else None
        fields = ("Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances")
        items = self._call(lambda: self._client.search_for_series(
            study_instance_uid=study_uid, search_filters=filters, fields=fields))
        log.info("PACS %s: study %s holds %d series", self.server, short_uid(study_uid), len(items))
        hits = [SeriesHit(study_uid=study_uid, series_uid=_value(i, "0020000E"), modality=str(_value(i, "00080060")),
                          series_number=_int(i, "00200011"), description=str(_value(i, "0008103E")),
                          n_instances=_int(i, "00201209")) for i in items]
        return sorted(hits, key=lambda h: -(h.n_instances or 0))

    # --- WADO-RS ---
    def retrieve_series(self, study_uid: str, series_uid: str, dest: str | Path, *,
                        progress: ProgressCallback | None = None, show_bar: bool = False) -> Path:
        """Stream one series into ``dest/<series_uid>/`` and return that folder.

        Instances are written one by one as they arrive (the series is never held in memory).
        The folder appears only when the transfer is complete; on any failure, or when the series
        grows beyond the size limit, what was written is removed and the error raised.

        Raises:
            PacsAuthError, PacsUnreachableError, PacsTlsError, PacsNotFoundError, PacsTooLargeError,
            PacsTransferError.
        """
        for uid in (study_uid, series_uid):  # the series UID becomes a folder name: no "../" from a PACS
            if len(str(uid)) > 64 or not UID_PATTERN.fullmatch(str(uid)):
                raise PacsError(f"{uid!r} is not a DICOM UID (digits and dots, at most 64 characters)")
        expected = next((s.n_instances for s in self.search_series(study_uid) if s.series_uid == series_uid), None)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        final = dest / series_uid
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest))
        bar = None
        started = time.perf_counter()
        log.info("PACS %s: retrieving series %s of study %s (%s images expected)", self.server,
                 short_uid(series_uid), short_uid(study_uid), expected if expected is not None else "unknown")
        try:
            if show_bar:
                from tqdm import tqdm

                bar = tqdm(total=expected, unit="image", desc="PACS retrieve")
            written, n = 0, 0
            for ds in self._call(lambda: self._client.iter_series(study_uid, series_uid), lazy=True):
                path = partial / f"{n:06d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                n += 1
                written += path.stat().st_size
                if written > self.max_bytes:
                    raise PacsTooLargeError(
                        f"the series is larger than this server's PACS limit of {_mb(self.max_bytes)} "
                        f"({n} images, {_mb(written)} so far); raise CARDIOVLM_PACS_MAX_STUDY_MB to load it")
                if bar is not None:
                    bar.update(1)
                if progress is not None:
                    progress(n, expected)
            if n == 0:
                raise PacsNotFoundError(f"series {series_uid} holds no images on the PACS")
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
            log.info("PACS %s: retrieved series %s, %d images, %s in %.1f s", self.server, short_uid(series_uid),
                     n, _mb(written), time.perf_counter() - started)
            return final
        except BaseException as err:  # KeyboardInterrupt included: never leave a half series behind
            shutil.rmtree(partial, ignore_errors=True)
            log.warning("PACS %s: retrieval of series %s stopped (%s); nothing kept", self.server,
                        short_uid(series_uid), type(err).__name__)
            raise
        finally:
            if bar is not None:
                bar.close()

    def load_series(self, study_uid: str, series_uid: str, dest: str | Path, *,
                    progress: ProgressCallback | None = None, show_bar: bool = False,
                    settings: Settings | None = None) -> Study:
        """Retrieve a series (see :meth:`retrieve_series`) and load it like a DICOM folder.

        The files stay in ``dest/<series_uid>/`` (a DICOM SEG must reference them later).
        """
        from cardiovlm.tools.ingest.study import load_study

        folder = self.retrieve_series(study_uid, series_uid, dest, progress=progress, show_bar=show_bar)
        study = load_study(folder, settings=settings)
        study.metadata["pacs_study_uid"] = study_uid
        return study

    # --- STOW-RS ---
    def send(self, datasets: Sequence[Dataset]) -> int:
        """Store ``datasets`` on the PACS; returns how many it accepted.

        Raises:
            PacsTransferError: the PACS refused some instances (with their failure reasons).
        """
        by_study: dict[str, list] = {}
        for ds in datasets:
            by_study.setdefault(str(ds.StudyInstanceUID), []).append(ds)
        stored = 0
        for study_uid, group in by_study.items():
            answer = self._call(partial(self._client.store_instances, group, study_instance_uid=study_uid))
            failed = list(getattr(answer, "FailedSOPSequence", []) or [])
            if failed:
                reasons = sorted({str(getattr(item, "FailureReason", "?")) for item in failed})
                log.warning("PACS %s: refused %d of %d objects for study %s (failure reason %s)", self.server,
                            len(failed), len(group), short_uid(study_uid), ", ".join(reasons))
                raise PacsTransferError(f"the PACS refused {len(failed)} of {len(group)} objects "
                                        f"(DICOM failure reason {', '.join(reasons)})")
            accepted = len(getattr(answer, "ReferencedSOPSequence", []) or [])
            log.info("PACS %s: stored %d of %d objects for study %s", self.server, accepted, len(group),
                     short_uid(study_uid))
            stored += accepted
        return stored

    def send_files(self, paths: Sequence[str | Path]) -> int:
        """Store DICOM files (folders are searched recursively); returns how many were accepted."""
        import pydicom

        files = [f for p in map(Path, paths) for f in ([p] if p.is_file() else sorted(p.rglob("*")))
                 if f.is_file()]
        if not files:
            raise PacsError("nothing to send: no files were given")
        return self.send([pydicom.dcmread(f) for f in files])

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        """One instance, e.g. a SEG or SR sent earlier, to check what the PACS stored."""
        return self._call(lambda: self._client.retrieve_instance(study_uid, series_uid, sop_uid))

    # --- errors ---
    def _call(self, fn, *, lazy: bool = False):
        """Run ``fn`` and translate requests / HTTP errors; ``lazy``: ``fn`` returns a generator."""
        if lazy:
            return self._translated_iter(fn)
        try:
            return fn()
        except Exception as err:  # translated below, re-raised unchanged when unknown
            raise self._logged(self._translate(err)) from err

    def _translated_iter(self, fn):
        try:
            yield from fn()
        except PacsError:
            raise
        except Exception as err:
            raise self._logged(self._translate(err)) from err

    def _logged(self, err: Exception) -> Exception:
        # The error's class and message (server, HTTP status, the setting to check) hold no patient data.
        if isinstance(err, PacsError):
            log.warning("PACS %s: %s: %s", self.server, type(err).__name__, err)
        return err

    def _translate(self, err: Exception) -> Exception:
        where = f"the PACS at {self.url}"
        if isinstance(err, PacsError):
            return err
        if isinstance(err, requests.exceptions.SSLError):
            return PacsTlsError(f"{where} failed the TLS check ({_reason(err)}); give the hospital CA in "
                                "CARDIOVLM_PACS_CA_BUNDLE rather than turning verification off")
        if isinstance(err, requests.exceptions.Timeout):
            return PacsUnreachableError(f"{where} did not answer in time; check the server or raise "
                                        "CARDIOVLM_PACS_TIMEOUT_S")
        if isinstance(err, requests.exceptions.ConnectionError):
            return PacsUnreachableError(f"{where} cannot be reached ({_reason(err)}); check the URL, the network "
                                        "and that the server is running")
        if isinstance(err, requests.exceptions.HTTPError) and err.response is not None:
            code = err.response.status_code
            if code in (401, 403):
                return PacsAuthError(f"{where} refused the credentials (HTTP {code}); check the user name and "
                                     "password or token (CARDIOVLM_PACS_USERNAME / _PASSWORD / _TOKEN)")
            if code == 404:
                return PacsNotFoundError(f"{where} does not hold the requested study or series (HTTP 404), "
                                         "or its DICOMweb root is not at this URL")
            return PacsTransferError(f"{where} answered HTTP {code} ({err.response.reason})")
        if isinstance(err, requests.exceptions.RequestException):
            return PacsUnreachableError(f"the transfer from {where} was interrupted ({type(err).__name__})")
        return err


def short_uid(uid: str) -> str:
    """A DICOM UID shortened for logs: its last 12 characters, enough to find the study in the PACS's own
    log, and no patient data (UIDs carry none)."""
    uid = str(uid)
    return uid if len(uid) <= 12 else "..." + uid[-12:]


def _server_name(url: str) -> str:
    """The PACS's host, port and path, without any user name or password written into the URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}" or url


def _reason(err: Exception) -> str:
    """The innermost reason of a requests error, without the long urllib3 wrapper text."""
    text = str(err)
    for marker in ("Connection refused", "Name or service not known", "certificate verify failed",
                   "timed out", "No route to host"):
        if marker in text:
            return marker.lower()
    return type(err).__name__
