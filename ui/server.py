"""Serving the app: loopback by default, authentication required anywhere else.

Users come from a file of ``user:password`` lines or from ``CARDIOVLM_UI_USERS`` (``user:pw,user2:pw2``).
Binding a non-loopback address without users is refused unless ``insecure`` is set explicitly.
Analytics are off and no share link is ever created. With users, :class:`cardiovlm.ui.access.AccessGuard`
limits login attempts and binds sessions and files to the login. At start-up the working files of
stopped servers (uploads, outputs, Gradio's cache) are deleted (:mod:`cardiovlm.ui.workdir`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cardiovlm.tools.core.errors import CardioVLMError

LOOPBACK_NAMES = {"localhost"}


class InsecureBindError(CardioVLMError):
    """A non-loopback address was asked for without authentication."""

    code = "server.insecure_bind"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_users(path: str | Path | None = None, settings=None) -> list[tuple[str, str]]:
    """(user, password) pairs from a file and/or the ``ui_users`` setting (``CARDIOVLM_UI_USERS``, a secret
    string); blank lines and # comments skipped. ``settings``: default, read from the environment now."""
    from cardiovlm.tools.core.settings import Settings

    lines: list[str] = []
    if path:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"the users file {path} does not exist")
        lines += path.read_text().splitlines()
    from_env = (settings or Settings()).ui_users
    lines += [u for u in (from_env.get_secret_value() if from_env else "").split(",") if u.strip()]
    users = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ValueError("each user must be written 'name:password'")
        users.append((user, password))
    return users


def launch(host: str = "127.0.0.1", port: int = 7860, *, users_file: str | None = None, insecure: bool = False,
           max_upload_mb: int = 2048, concurrency: int = 2, queue_size: int = 32, block: bool = True,
           limiter=None):
    """Build and start the app; returns (app, url) when ``block`` is False.

    ``limiter``: a :class:`cardiovlm.ui.access.LoginLimiter`; default from the settings (``CARDIOVLM_UI_LOGIN_*``:
    5 failures per user name, or 20 per client address, in 15 minutes lock it for 15 minutes).
    """
    from cardiovlm.tools.core.settings import NO_TELEMETRY, set_library_environment

    set_library_environment(NO_TELEMETRY, override=True)
    users = read_users(users_file)
    if not is_loopback(host) and not users and not insecure:
        raise InsecureBindError(f"refusing to serve on {host} without authentication: give --users FILE (or "
                                "CARDIOVLM_UI_USERS), or --insecure if this network is trusted")
    from starlette.middleware import Middleware

    from cardiovlm.ui import workdir
    from cardiovlm.ui.access import AccessGuard, LoginLimiter
    from cardiovlm.ui.app import build_app

    workdir.clean_stale()
    files = workdir.use_for_gradio()
    workdir.use_for_temporary_files()
    app = build_app(max_upload_mb=max_upload_mb)
    app.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    guard = Middleware(AccessGuard, file_root=files, limiter=limiter or LoginLimiter.from_settings())
    # quiet: Gradio's own banner suggests share=True, which this server never uses (the CLI prints the URL).
    _, url, _ = app.launch(server_name=host, server_port=port, auth=users or None, share=False,
                           max_file_size=f"{max_upload_mb}mb", prevent_thread_lock=not block, show_error=False,
                           quiet=True, app_kwargs={"middleware": [guard]})
    return app, url


if __name__ == "__main__":  # Hugging Face Spaces runs this file directly (README's app_file)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from cardiovlm.tools.core.settings import external_environment

    on_space = bool(external_environment().space_id)  # the Space serves behind its own login
    launch(host="0.0.0.0" if on_space else "127.0.0.1", insecure=on_space)
