"""``python -m ecr_layers``: the same as the ``ecr-layers`` command.

Python has imported the package by the time this runs: only the console script
(``_ecr_layers_cli``) holds Ctrl-C back from before that.
"""

import sys

from ._cli import console

console(sys.argv[1:])
