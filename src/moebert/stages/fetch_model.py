"""`moebert fetch-model`: a hub model (config, safetensors weights, tokenizer) downloaded into a directory, on
the submit host, so compute nodes never need the hub."""

from __future__ import annotations

HELP = "download a hub model (config, safetensors, tokenizer) into a directory"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--model", required=True, help="hub id, e.g. bert-base-uncased (read from MOEBERT_HUB_MIRROR if set)"
    )
    parser.add_argument("--output", required=True, help="model directory to write")
    parser.add_argument("--revision", help="branch, tag or commit of the hub repository")
    parser.add_argument(
        "--students",
        nargs="*",
        default=[],
        help="student kinds the workflow builds from it: refused now if its backbone cannot build one",
    )


def run(args) -> None:
    from moebert.hub import fetch_model

    print(f"fetched {args.model} -> {fetch_model(args.model, args.output, args.revision, args.students)}")
