"""Helpers for tests and benchmarks that run the app (or a server) on loopback and read its chat."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_texts(chat) -> list[str]:
    """The text parts of a Gradio chat history, in order (message content is a string or a list of parts)."""
    out = []
    for message in chat:
        content = message["content"]
        for part in content if isinstance(content, list) else [content]:
            if isinstance(part, dict) and part.get("type") == "text":
                out.append(part["text"])
    return out
