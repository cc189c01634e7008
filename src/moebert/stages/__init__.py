"""One module per `moebert` command: `HELP`, `add_arguments(parser)` (the command's flags) and `run(args)` (the
flags parsed into typed options, `moebert.config.options`, and handed to the package)."""
