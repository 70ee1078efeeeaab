"""Server modes: loopback by default, no open non-loopback server without authentication."""

import pytest

from cardiovlm.ui.server import InsecureBindError, is_loopback, launch, read_users


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "192.168.0.7", "example.org"])
def test_other_addresses_are_not_loopback(host):
    assert not is_loopback(host)


def test_non_loopback_bind_without_users_is_refused(monkeypatch):
    monkeypatch.delenv("CARDIOVLM_UI_USERS", raising=False)
    with pytest.raises(InsecureBindError, match="without authentication"):
        launch("0.0.0.0", 7999, block=False)


def test_users_from_file_and_environment(tmp_path, monkeypatch):
    users = tmp_path / "users.txt"
    users.write_text("# cardiology\nalice:s3cret\n\nbob:pa:ss\n")
    monkeypatch.setenv("CARDIOVLM_UI_USERS", "carol:pw")
    assert read_users(users) == [("alice", "s3cret"), ("bob", "pa:ss"), ("carol", "pw")]


def test_malformed_users_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("CARDIOVLM_UI_USERS", raising=False)
    users = tmp_path / "users.txt"
    users.write_text("alice\n")
    with pytest.raises(ValueError, match="name:password"):
        read_users(users)
