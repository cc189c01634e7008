#!/usr/bin/env bash
# The campaign's controller as a SLURM job of its own, for sites whose login nodes kill long processes.
# From the repository root, with MLFLOW_TRACKING_URI exported (a tracking server on a host that lives as
# long as the campaign, not in this job: the jobs a link leaves running at its limit still log to it):
#
#   sbatch scripts/controller-job.sh --configfile config/paper.yaml
#
# (targets, if any, before --configfile, which takes several files).
#
# Each link queues its successor first (to start when this one ends, however it ends), waits for the jobs
# an earlier link left running (workflow/lib/controller.py: their outputs would otherwise be submitted
# again), and runs Snakemake. At the time limit SLURM stops Snakemake (SIGTERM: it submits nothing more,
# and is killed when KillWait runs out), its jobs go on, and the successor takes over once they end. When
# Snakemake ends by itself, done or failed for good, the successor is cancelled. To stop the campaign, cancel
# the links (scancel --name moebert-controller), then its jobs (python workflow/lib/controller.py names them).
# --cores caps every job's threads (Snakemake applies it to cluster jobs too), so it is not this job's own
# CPU count; set it above the config's resources.threads.
#SBATCH --job-name=moebert-controller
#SBATCH --time=1-00:00:00
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
successor=$(sbatch --parsable --dependency="afterany:${SLURM_JOB_ID}" scripts/controller-job.sh "$@")
echo "controller ${SLURM_JOB_ID}: successor ${successor} queued"
# The successor stays queued only when SLURM stops this link (SIGTERM at its time limit); however else
# it ends, done, failed for good or failing at once (a bad argument), the successor goes: no endless chain.
stopping=
trap 'stopping=1' TERM
trap '[ -n "${stopping}" ] || scancel "${successor}"' EXIT
python workflow/lib/controller.py
# The previous link was killed holding Snakemake's lock; it has ended (the dependency), so nothing holds it.
snakemake --unlock "$@"
snakemake --cores 256 --profile slurm "$@"
