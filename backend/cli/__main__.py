"""``python -m steadytalk_backend.cli``: the same as the ``steadytalk`` console script."""

import sys

from . import main

sys.exit(main())
