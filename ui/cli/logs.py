"""Logging for the ``cardiovlm`` commands: the library only names its loggers, a command shows them.

Library modules call ``logging.getLogger(__name__)`` and never configure logging; a command that runs
long or talks to a server (training, PACS) calls :func:`configure_cli_logging` so its INFO lines
(steps, checkpoints, PACS transfers) reach stderr with a time stamp, while other libraries' chatter
stays at WARNING.
"""

from __future__ import annotations

import logging

# This project's one namespace: its INFO lines are shown, other libraries' only from WARNING on.
PROJECT_LOGGER = "cardiovlm"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_cli_logging(level: int = logging.INFO) -> None:
    """Send this project's log lines from ``level`` on to stderr. A root logger that already has
    handlers (an application, or pytest, that set up logging itself) is left as it is."""
    if logging.getLogger().handlers:
        return
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger(PROJECT_LOGGER).setLevel(level)
