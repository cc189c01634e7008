"""`moebert submission`: one model's GLUE prediction files (`moebert predict`, one directory per task) zipped
into the single upload the benchmark takes."""

from __future__ import annotations

HELP = "zip GLUE prediction files of several tasks into one benchmark upload"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--predictions", nargs="+", required=True, help="directories written by `moebert predict`"
    )
    parser.add_argument("--output", required=True, help="the zip to write")


def run(args) -> None:
    from moebert.prediction import zip_submission

    print(f"GLUE submission -> {zip_submission(args.predictions, args.output)}")
