"""``python -m sgaudit`` is the ``sgaudit`` command."""

import sys

from .cli import main

sys.exit(main())
