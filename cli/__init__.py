"""The `offeropt` command line: each command group registers its subcommands on one parser;
one `ExitCode` for all of them."""
