"""The commands' logging set-up: project INFO lines on stderr, other libraries only from WARNING."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_command_shows_project_info_lines_and_hides_library_chatter():
    # A fresh interpreter: pytest has its own logging handlers, which the set-up must leave alone.
    script = textwrap.dedent("""
        import logging
        from cardiovlm.ui.cli.logs import configure_cli_logging
        configure_cli_logging()
        logging.getLogger("cardiovlm.tools.ingest.pacs").info("PACS host: stored 2 of 2 objects")
        logging.getLogger("cardiovlm.training.train").info("checkpoint saved at step 9")
        logging.getLogger("chromadb.telemetry").info("library chatter")
        logging.getLogger("urllib3").warning("library warning")
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # stdout stays the command's own output
    assert "INFO cardiovlm.tools.ingest.pacs: PACS host: stored 2 of 2 objects" in done.stderr
    assert "INFO cardiovlm.training.train: checkpoint saved at step 9" in done.stderr
    assert "WARNING urllib3: library warning" in done.stderr
    assert "library chatter" not in done.stderr


def test_logging_set_up_by_the_host_application_is_left_alone():
    # Under pytest (as under an application that set up logging) the root logger already has handlers.
    import logging

    from cardiovlm.ui.cli.logs import configure_cli_logging

    assert logging.getLogger().handlers
    before = logging.getLogger("cardiovlm").level
    configure_cli_logging(logging.DEBUG)
    assert logging.getLogger("cardiovlm").level == before
