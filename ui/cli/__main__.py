"""``python -m cardiovlm.ui.cli``: the ``cardiovlm`` command."""

import sys

from cardiovlm.ui.cli import main

sys.exit(main())
