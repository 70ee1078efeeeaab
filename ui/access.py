"""Access control in front of the Gradio app when users log in: what each login may see and fetch.

Gradio's own login checks only that *some* user is logged in. This ASGI middleware adds, for an
app served with users (it does nothing without them):

- **Login rate limiting.** A user name with ``max_failures`` wrong passwords within ``window_s`` is
  locked for ``lockout_s`` (even the right password is refused, with HTTP 429); so is a client
  address with ``max_failures_per_client`` failures (guessing across many user names).
- **Sessions bound to the login.** A Gradio session hash belongs to the first user who uses it; a
  request of another user naming it (queue join or data, run, cancel) is refused with 403.
- **Files bound to the login.** A file under Gradio's upload and cache folder is served only to the
  user it was uploaded by or sent to; paths are learned from the app's own API responses.
- **No API list before login.** The login page is sent without the embedded API description
  (endpoint names, parameter choices such as the demo case names).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, unquote

_API_INFO = re.compile(rb"window\.gradio_api_info\s*=\s*.*?;\s*</script>", re.S)
_MAX_TRACKED = 50_000  # session hashes and files remembered per server; the oldest are forgotten first


class _Bounded(OrderedDict):
    """A dict that forgets its oldest entries beyond ``_MAX_TRACKED``."""

    def remember(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > _MAX_TRACKED:
            self.popitem(last=False)


@dataclass
class LoginLimiter:
    """Counts failed logins per user name and per client address; locks either once over its limit."""

    # Defaults equal the settings' (ui_login_*); the server builds its limiter with from_settings.
    max_failures: int = 5  # wrong passwords for one user name within window_s before a lockout
    max_failures_per_client: int = 20  # failures from one address (any user names) before a lockout
    window_s: float = 15 * 60
    lockout_s: float = 15 * 60
    # Bounded, so guessing with endless made-up user names cannot fill the memory.
    _failures: _Bounded = field(default_factory=_Bounded)
    _locked_until: _Bounded = field(default_factory=_Bounded)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings=None) -> LoginLimiter:
        """The limits of ``settings`` (default :func:`cardiovlm.tools.core.settings.get_settings`),
        ``CARDIOVLM_UI_LOGIN_*``."""
        from cardiovlm.tools.core.settings import get_settings

        s = settings or get_settings()
        return cls(max_failures=s.ui_login_max_failures, max_failures_per_client=s.ui_login_max_failures_per_client,
                   window_s=s.ui_login_window_s, lockout_s=s.ui_login_lockout_s)

    def locked_for(self, user: str, client: str, now: float | None = None) -> float:
        """Seconds until ``user`` (or ``client``) may try again; 0 when not locked."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return max(0.0, *(self._locked_until.get(k, 0.0) - now for k in self._keys(user, client)))

    def failed(self, user: str, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for key, limit in zip(self._keys(user, client), (self.max_failures, self.max_failures_per_client)):
                times = self._failures.get(key) or deque()
                self._failures.remember(key, times)
                times.append(now)
                while times and times[0] < now - self.window_s:
                    times.popleft()
                if len(times) >= limit:
                    self._locked_until.remember(key, now + self.lockout_s)
                    times.clear()

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{user}", None)

    @staticmethod
    def _keys(user: str, client: str) -> tuple[str, str]:
        return f"user:{user}", f"client:{client}"


class AccessGuard:
    """ASGI middleware for the Gradio app (see the module docstring).

    Args:
        app: the next ASGI application.
        file_root: Gradio's upload and cache folder (``GRADIO_TEMP_DIR``); files under it are per user.
        limiter: the login limiter; a default one when None.
    """

    def __init__(self, app, *, file_root: str | Path, limiter: LoginLimiter | None = None) -> None:
        self.app = app
        self.file_root = str(Path(file_root).resolve())
        self._file_pattern = re.compile(re.escape(self.file_root.encode()) + rb"/[^\"\\<>\s]+")
        self.limiter = limiter or LoginLimiter()
        self.session_owner = _Bounded()  # session hash -> user
        self.file_owners = _Bounded()  # resolved path -> set of users
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send) -> None:
        gradio_app = scope.get("app")
        if scope["type"] != "http" or getattr(gradio_app, "auth", None) is None:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if scope["method"] == "POST" and path.rstrip("/").endswith("/login"):
            await self._login(scope, receive, send)
            return
        user = self._user(scope, gradio_app)
        if scope["method"] in ("GET", "HEAD") and path.rstrip("/") in ("", scope.get("root_path", "").rstrip("/")):
            if user is None:
                await self.app(scope, receive, self._without_api_info(send))
                return
        if user is None:  # Gradio answers 401 itself
            await self.app(scope, receive, send)
            return
        if "/file=" in path or "/gradio_api/file/" in path:
            if not self._may_fetch(user, path):
                await _refuse(send, 403, "this file belongs to another user")
                return
            await self.app(scope, receive, send)
            return
        body = b""
        if scope["method"] == "POST" and _header(scope, b"content-type").startswith(b"application/json"):
            body = await _read_body(receive)
            receive = _replay(body, receive)
        session = _session_hash(scope, body)
        if session is not None and not self._owns_session(user, session):
            await _refuse(send, 403, "this session belongs to another user")
            return
        await self.app(scope, receive, self._learning_files(user, send))

    # --- login ---
    async def _login(self, scope, receive, send) -> None:
        body = await _read_body(receive)
        form = parse_qs(body.decode("utf-8", "replace"))
        user = (form.get("username") or [""])[0].strip()
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.limiter.locked_for(user, client)
        if wait > 0:
            await _refuse(send, 429, f"Too many failed logins: try again in {int(wait // 60) + 1} minute(s).")
            return
        status = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, _replay(body, receive), watch)
        if status.get("code") == 200:
            self.limiter.succeeded(user)
        elif status.get("code") in (400, 401):
            self.limiter.failed(user, client)

    # --- who is asking ---
    @staticmethod
    def _user(scope, gradio_app) -> str | None:
        cookie = SimpleCookie()
        try:
            cookie.load(_header(scope, b"cookie").decode("latin-1"))
        except Exception:  # noqa: BLE001 (a malformed cookie header is simply no login)
            return None
        cookie_id = getattr(gradio_app, "cookie_id", "")
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            if name in cookie:
                user = gradio_app.tokens.get(cookie[name].value)
                if user is not None:
                    return user
        return None

    def _owns_session(self, user: str, session: str) -> bool:
        with self._lock:
            owner = self.session_owner.get(session)
            if owner is None:
                self.session_owner.remember(session, user)
                return True
            return owner == user

    # --- files ---
    def _may_fetch(self, user: str, path: str) -> bool:
        target = unquote(path.split("/file=", 1)[1] if "/file=" in path else path.split("/gradio_api/file/", 1)[1])
        try:
            resolved = str(Path(target).resolve())
        except (OSError, ValueError):
            return False
        if not (resolved == self.file_root or resolved.startswith(self.file_root + "/")):
            return True  # outside the per-user folder: Gradio's own allow-list decides
        with self._lock:
            return user in self.file_owners.get(resolved, ())

    def _learning_files(self, user: str, send):
        """Pass responses through, recording the per-user files they name as this user's."""
        tail = b""

        async def wrapped(message):
            nonlocal tail
            if message["type"] == "http.response.body":
                chunk = tail + message.get("body", b"")
                found = {m.group(0).decode("utf-8", "replace") for m in self._file_pattern.finditer(chunk)}
                if found:
                    with self._lock:
                        for p in found:
                            resolved = str(Path(p).resolve())
                            self.file_owners.remember(resolved, self.file_owners.get(resolved, set()) | {user})
                tail = chunk[-(len(self.file_root) + 512):]  # a path split across two chunks
            await send(message)

        return wrapped

    # --- the page before login ---
    @staticmethod
    def _without_api_info(send):
        start: dict = {}
        parts: list[bytes] = []

        async def wrapped(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = _API_INFO.sub(b"window.gradio_api_info = {};</script>", b"".join(parts))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return wrapped


def _header(scope, name: bytes) -> bytes:
    return next((v for k, v in scope.get("headers", []) if k.lower() == name), b"")


def _session_hash(scope, body: bytes) -> str | None:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("session_hash"):
        return query["session_hash"][0]
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if isinstance(data, dict) and isinstance(data.get("session_hash"), str):
            return data["session_hash"]
    return None


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    """The request body once more, then the client's own messages (a disconnect when it leaves)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
