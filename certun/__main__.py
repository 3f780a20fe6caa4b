"""``python -m certun``: the certun command line (see :mod:`certun.cli`)."""

import sys

from certun.cli import main

sys.exit(main())
