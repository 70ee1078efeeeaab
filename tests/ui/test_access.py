"""With users, the served app binds sessions and files to the login, limits login attempts, and shows
nothing of the app before login (loopback server, real HTTP, two logged-in users)."""

from __future__ import annotations

import fcntl
import subprocess
import sys

import httpx
import pytest
from gradio_client import Client

from cardiovlm.tools.core.settings import get_settings
from cardiovlm.ui.access import LoginLimiter
from cardiovlm.ui.server import launch
from tests.loopback import chat_texts, free_port

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    users = tmp_path_factory.mktemp("users") / "users.txt"
    users.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
    app, url = launch("127.0.0.1", free_port(), users_file=str(users), block=False,
                      limiter=LoginLimiter(max_failures=5, max_failures_per_client=50))
    yield url.rstrip("/")
    app.close()


def _login(url: str, user: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/login", data={"username": user, "password": password})


def test_the_page_before_login_names_no_endpoint_and_no_demo_case(server):
    before = httpx.get(server + "/")
    assert before.status_code == 200 and "auth_required" in before.text
    assert "load_demo" not in before.text and "lad_stenosis" not in before.text
    cookies = _login(server, "alice", USERS["alice"]).cookies
    after = httpx.get(server + "/", cookies=cookies)
    assert "load_demo" in after.text  # the same page after login does carry them (the check can fail)


def test_repeated_wrong_passwords_lock_that_user_name(server):
    assert [_login(server, "carol", "guess").status_code for _ in range(5)] == [400] * 5
    locked = _login(server, "carol", USERS["carol"])  # the right password, too late
    assert locked.status_code == 429 and "Too many failed logins" in locked.text
    assert _login(server, "bob", USERS["bob"]).status_code == 200  # other users are not locked out


def test_another_login_cannot_read_a_session_or_its_files(server, tmp_path):
    alice = Client(server, auth=("alice", USERS["alice"]), verbose=False, download_files=False)
    summary, *_ = alice.predict("healthy", "axial", "cardiac", api_name="/load_demo")
    assert "Modality** CT" in summary
    chat, _, findings, downloads, *_ = alice.predict("What is the calcium score?", [], api_name="/ask")
    assert "Agatston" in chat_texts(chat)[-1] and downloads
    bob = Client(server, auth=("bob", USERS["bob"]), verbose=False, download_files=False)
    bob.session_hash = alice.session_hash  # bob names alice's session
    with pytest.raises(Exception):  # noqa: B017 (the client raises its own error for a refused request)
        bob.predict("What is the calcium score?", [], api_name="/ask")
    url = downloads[0]["url"]
    assert httpx.get(url, cookies=alice.cookies).status_code == 200
    refused = httpx.get(url, cookies=bob.cookies)
    assert refused.status_code == 403 and "another user" in refused.text
    chat, *_ = alice.predict("What is the calcium score?", [], api_name="/ask")  # alice's session is intact
    assert "Agatston" in chat_texts(chat)[-1]


def test_the_server_keeps_uploads_and_temporary_files_in_its_own_folder(server):
    import os
    import tempfile

    from cardiovlm.ui import workdir

    mine = str(workdir.process_dir())
    assert os.environ["GRADIO_TEMP_DIR"].startswith(mine) and tempfile.gettempdir().startswith(mine)


def test_a_restart_deletes_the_files_of_stopped_servers_only(tmp_path, monkeypatch):
    from cardiovlm.ui import workdir

    monkeypatch.setenv("CARDIOVLM_UI_WORK_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        stale = tmp_path / "4242-crashed" / "gradio" / "0a1b"
        stale.mkdir(parents=True)
        (stale / "patient.zip").write_bytes(b"PK upload with a patient's name")
        running = tmp_path / "4343-running"
        running.mkdir()
        holder = subprocess.Popen([sys.executable, "-c", (
            "import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(60)"), str(running / ".owner.lock")], stdout=subprocess.PIPE)
        try:
            assert holder.stdout.readline().strip() == b"locked"
            mine = workdir.process_dir()
            removed = workdir.clean_stale()
            assert removed == [tmp_path / "4242-crashed"] and not stale.exists()
            assert running.is_dir() and mine.is_dir()
        finally:
            holder.kill()
            holder.wait()
        assert workdir.clean_stale() == [running]  # once its server has stopped
        with open(mine / ".owner.lock") as lock, pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # this process still holds its own folder
    finally:
        get_settings.cache_clear()


def test_a_lockout_ends_and_guessing_across_user_names_locks_the_client():
    limiter = LoginLimiter(max_failures=3, max_failures_per_client=10, window_s=600, lockout_s=900)
    for t in range(3):
        limiter.failed("carol", "10.0.0.1", now=t)
    assert limiter.locked_for("carol", "10.0.0.2", now=10) > 0  # the name is locked from any address
    assert limiter.locked_for("carol", "10.0.0.2", now=3 + 900) == 0  # until the lockout ends
    for i in range(10):  # one failure each for ten names, from one address
        limiter.failed(f"name{i}", "10.0.0.9", now=1000)
    assert limiter.locked_for("someone-else", "10.0.0.9", now=1001) > 0
    assert limiter.locked_for("someone-else", "10.0.0.3", now=1001) == 0


def test_the_login_limits_are_settings(monkeypatch):
    from cardiovlm.tools.core.settings import Settings

    defaults = LoginLimiter.from_settings(Settings(_env_file=None))  # the settings' defaults are the class's
    assert (defaults.max_failures, defaults.max_failures_per_client, defaults.window_s, defaults.lockout_s) == (
        LoginLimiter().max_failures, LoginLimiter().max_failures_per_client, LoginLimiter().window_s,
        LoginLimiter().lockout_s)
    monkeypatch.setenv("CARDIOVLM_UI_LOGIN_MAX_FAILURES", "2")
    monkeypatch.setenv("CARDIOVLM_UI_LOGIN_LOCKOUT_S", "60")
    limiter = LoginLimiter.from_settings(Settings())
    limiter.failed("dave", "10.0.0.1", now=0)
    assert limiter.locked_for("dave", "10.0.0.1", now=1) == 0  # one failure: not yet
    limiter.failed("dave", "10.0.0.1", now=1)
    assert 0 < limiter.locked_for("dave", "10.0.0.1", now=2) <= 60 and limiter.locked_for("dave", "x", now=62) == 0
    monkeypatch.setenv("CARDIOVLM_UI_LOGIN_MAX_FAILURES", "0")
    with pytest.raises(ValueError, match="ui_login_max_failures"):
        Settings()


def test_logins_from_the_environment_are_a_secret_string(monkeypatch):
    from cardiovlm.tools.core.settings import Settings
    from cardiovlm.ui.server import read_users

    monkeypatch.setenv("CARDIOVLM_UI_USERS", "carol:pw-carol,dan:pw-dan")
    settings = Settings()
    assert "pw-carol" not in repr(settings) and "pw-carol" not in str(settings.model_dump())
    assert read_users(settings=settings) == [("carol", "pw-carol"), ("dan", "pw-dan")]
