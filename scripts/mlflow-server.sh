#!/usr/bin/env bash
# MLflow tracking server for cluster runs. Start it on the submit host (inside tmux/screen, or with nohup)
# and keep it running while the workflow runs; then, in the shell that starts the workflow, run the
# `export MLFLOW_TRACKING_URI=...` line it prints, and `snakemake --cores all --profile slurm`: every job
# (sbatch exports the environment) logs to this server over HTTP instead of sharing a sqlite file.
#
#   MOEBERT_MLFLOW_DIR      store directory: mlflow.db (sqlite) and artifacts/ beside it
#                           (default: results/mlflow-server of this repository). Put it on a disk local
#                           to the submit host when results/ is on a network file system: sqlite locks
#                           badly there.
#   MOEBERT_MLFLOW_PORT     port (default 5000)
#   MOEBERT_MLFLOW_WORKERS  server processes (default 1: one writer is what sqlite handles best)
# Further arguments go to `mlflow server` and win over the ones here, e.g. --allowed-hosts.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${MOEBERT_MLFLOW_DIR:-$repo/results/mlflow-server}"
port="${MOEBERT_MLFLOW_PORT:-5000}"
workers="${MOEBERT_MLFLOW_WORKERS:-1}"
fqdn="$(hostname -f 2>/dev/null || hostname)"
short="$(hostname -s 2>/dev/null || hostname)"

mkdir -p "$dir/artifacts"
dir="$(cd "$dir" && pwd)"

echo "MLflow server on $fqdn:$port: store $dir/mlflow.db, artifacts $dir/artifacts"
echo "Before snakemake, run:"
echo "export MLFLOW_TRACKING_URI=http://$fqdn:$port"

# The jobs send Host: <fqdn>:<port>; MLflow's default host check admits only localhost and private IPs.
exec mlflow server \
    --backend-store-uri "sqlite:///$dir/mlflow.db" \
    --artifacts-destination "$dir/artifacts" \
    --host 0.0.0.0 \
    --port "$port" \
    --workers "$workers" \
    --allowed-hosts "$fqdn,$fqdn:*,$short,$short:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*" \
    "$@"
