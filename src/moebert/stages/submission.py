"""`moebert submission`: one model's GLUE prediction files (`moebert predict`, one directory per task) zipped
into the single upload the benchmark takes: every one of its files, those of the tasks not predicted holding a
placeholder (moebert.prediction.placeholders), named in a warning; or, with --no-placeholders, refused."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

HELP = "zip GLUE prediction files of several tasks into one benchmark upload"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--predictions", nargs="+", required=True, help="directories written by `moebert predict`"
    )
    parser.add_argument("--output", required=True, help="the zip to write")
    parser.add_argument(
        "--no-placeholders",
        action="store_true",
        help="refuse (naming them) when test splits were not predicted, instead of filling their files with a "
        "constant (the first label; STS-B 2.5)",
    )


def run(args) -> None:
    from moebert.prediction import placeholders, zip_submission

    archive, missing = zip_submission(args.predictions, args.output, fill=not args.no_placeholders)
    if missing:
        filler = placeholders()
        log.warning(
            "GLUE submission %s: %d of its %d files are placeholders, not predictions: %s. The benchmark takes "
            "an upload only with every file; these score as a constant predictor.",
            archive,
            len(missing),
            len(filler),
            ", ".join(f"{name} (every row {filler[name]})" for name in missing),
        )
    print(f"GLUE submission -> {archive}")
