"""`python -m pipeline.cli`: the `rlpipe` command."""

import sys

from pipeline.cli import main

sys.exit(main())
