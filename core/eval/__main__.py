"""``python -m rain_core.eval TASK ...``: the same as ``rain eval TASK ...``."""

import sys

from ..cli import main

sys.exit(main(["eval", *sys.argv[1:]]))
