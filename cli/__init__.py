"""The `offeropt` command line: each command group registers its subcommands on one parser;
one `ExitCode` for all of them."""

import time

IMPORTED = time.monotonic()  # a command run from the shell counts its imports in its time limit
