"""`python -m cli`: the same as the `offeropt` console script."""

import sys

from cli.main import main

sys.exit(main())
