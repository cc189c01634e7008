"""The jobs of a Snakemake dry run, read from Snakemake itself rather than from its printed text.

`snakemake.cli` parses the arguments and hands them to Snakemake's API, exactly as the `snakemake` command
does; every job it plans is announced to the logger as a structured JOB_INFO event (the logger-plugin
interface, `snakemake_interface_logger_plugins`), carrying its rule, wildcards, threads, resources, files and
shell command. Snakemake's public DAG API has no call that lists the jobs with their wildcards and
resources (`printd3dag` gives rule names only), and its logger manager replaces every handler it finds, so
the events are read with a logger filter, which it leaves in place.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field, replace

from moebert.errors import MoebertError


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: dict[str, str]
    threads: int
    resources: dict = field(default_factory=dict)
    input: tuple[str, ...] = ()
    output: tuple[str, ...] = ()
    shellcmd: str | None = None
    group: str | None = None  # the group job it is submitted in (a cluster executor's dry run), if any
    group_runtime: int | None = None  # that group job's runtime (sbatch -t), as Snakemake adds its members'


def dry_run(args: list[str]) -> list[Job]:
    """Every job `snakemake --dry-run --forceall? <args>` would run, the target rule `all` left out. `args` are
    the `snakemake` command's own (e.g. --configfile, --config, --profile, --forceall)."""
    from snakemake.cli import args_to_api, parse_args
    from snakemake.logging import logger
    from snakemake_interface_logger_plugins.common import LogEvent

    jobs, groups = [], {}

    def key(rule: str, wildcards) -> tuple:
        return rule, tuple(sorted(dict(wildcards).items()))

    def capture(record) -> bool:
        if getattr(record, "event", None) == LogEvent.GROUP_INFO:
            first = next(iter(record.jobs))
            runtime = int(first.dag.get_job_group(first).resources.get("runtime", 0))
            groups.update(
                {key(job.rule.name, job.wildcards_dict): (record.group_id, runtime) for job in record.jobs}
            )
        if getattr(record, "event", None) == LogEvent.JOB_INFO and record.rule_name != "all":
            jobs.append(
                Job(
                    record.rule_name,
                    dict(record.wildcards),
                    record.threads,
                    {k: v for k, v in dict(record.resources).items() if not k.startswith("_")},
                    tuple(record.input or ()),
                    tuple(record.output or ()),
                    record.shellcmd,
                )
            )
        return True

    parser, parsed = parse_args(["--dry-run", "--quiet", "all", *args])
    logger.addFilter(capture)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            ok = args_to_api(parsed, parser)
    finally:
        logger.removeFilter(capture)
    if not ok:
        raise MoebertError(f"snakemake --dry-run {' '.join(args)} failed:\n{printed.getvalue().strip()}")
    return [
        replace(job, group=group, group_runtime=runtime)
        for job in jobs
        for group, runtime in [groups.get(key(job.rule, job.wildcards), (None, None))]
    ]
