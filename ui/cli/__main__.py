"""``python -m ui.cli``: the ``cardiovlm`` command."""

import sys

from ui.cli import main

sys.exit(main())
