"""PacsClient configuration and authentication: bearer tokens, missing settings, TLS checks."""

from __future__ import annotations

import http.server
import subprocess
import threading

import pytest

from cardiovlm.tools.core.settings import Settings
from cardiovlm.tools.ingest.pacs import PacsClient, PacsNotConfiguredError, PacsTlsError


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every QIDO request with an empty result and keeps the Authorization header."""

    seen: list[str | None] = []

    def do_GET(self):  # http.server's naming
        _Recorder.seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()


def test_bearer_token_from_settings_is_sent(recorder):
    settings = Settings(pacs_url=recorder, pacs_auth="bearer", pacs_token="tok-123")
    assert PacsClient.from_settings(settings).search_studies(patient_id="1") == []
    assert _Recorder.seen == ["Bearer tok-123"]


def test_no_authentication_sends_no_header(recorder):
    assert PacsClient(recorder).search_studies() == []
    assert _Recorder.seen == [None]


def test_missing_url_or_credentials_are_refused_with_the_setting_to_set():
    with pytest.raises(PacsNotConfiguredError, match="CARDIOVLM_PACS_URL"):
        PacsClient.from_settings(Settings(pacs_url=None))
    with pytest.raises(ValueError, match="CARDIOVLM_PACS_PASSWORD"):
        PacsClient("http://pacs/dicom-web", auth="basic", username="u")
    with pytest.raises(ValueError, match="CARDIOVLM_PACS_TOKEN"):
        PacsClient("http://pacs/dicom-web", auth="bearer")


def test_tls_verification_is_on_by_default():
    assert Settings().pacs_verify_tls is True
    assert PacsClient("https://pacs/dicom-web")._client._session.verify is True


def test_an_untrusted_certificate_is_refused_and_the_hospital_ca_accepted(tmp_path, monkeypatch):
    import ssl

    # requests would let this variable replace the configured CA bundle; the settings must win.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "some-other-ca.pem"))

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                           str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a test certificate: {made.stderr.decode()[-200:]}")
    # (Debian's Orthanc 1.10 resets HTTPS connections after the handshake, so a Python server plays the PACS.)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/dicom-web"
    try:
        with pytest.raises(PacsTlsError, match="failed the TLS check \\(certificate verify failed\\).*CA_BUNDLE"):
            PacsClient(url, timeout_s=5).search_studies()
        assert PacsClient(url, ca_bundle=cert).search_studies() == []
    finally:
        server.shutdown()


def test_a_uid_that_is_not_a_uid_is_refused_before_anything_is_written(tmp_path):
    from cardiovlm.tools.ingest.pacs import PacsError

    with pytest.raises(PacsError, match="not a DICOM UID"):
        PacsClient("http://pacs/dicom-web").retrieve_series("1.2.3", "../../etc", tmp_path)
    assert list(tmp_path.iterdir()) == []
