"""``python -m ecr_layers``: the same as the ``ecr-layers`` command."""

import sys

from ._cli import main

sys.exit(main())
