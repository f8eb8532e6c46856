"""``python -m app`` → the ``alertrelay`` command."""

import sys

from app.cli import main

sys.exit(main())
