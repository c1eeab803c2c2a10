"""`shammie run CONFIG`: a whole crawl-to-shards job from one YAML file."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  shammie run jobs/example-local.yaml                 # offline example, embedded Ray
  shammie run jobs/fineweb.yaml --set input=[s3://bucket/warc/] --set output=s3://bucket/job
  shammie run jobs/fineweb-edu.yaml --set edu.model=models/edu.bin --dry-run
  shammie run jobs/fineweb.yaml --ray-address auto    # on a running Ray cluster

Re-running the same command resumes: complete steps and finished tasks are skipped.
A step whose inputs or settings changed since it ran is refused, naming the change;
--overwrite recomputes it (and everything downstream) into fresh folders that replace
the old ones only once complete.
Relative paths in the file resolve against the file's folder; those given with
--set resolve against the current directory. Reference: docs/jobs.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from shammie.pipeline import options
    from shammie.pipeline.runner import RunOptions

    parser.formatter_class = options.HelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("config", help="job config (YAML), e.g. jobs/fineweb.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key (dotted, YAML value), e.g. --set crawl.limit_files=2; repeatable")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the config and that the output is writable, print the plan, run nothing")
    # --workers/--ray-address/--shared-filesystem override the config's keys; --overwrite/--wait/--verify
    # apply to every step.
    options.add_arguments(parser, RunOptions)


def run(args: argparse.Namespace) -> int:
    from shammie.jobs.config import load_config
    from shammie.jobs.runner import dry_run_checks, format_plan, plan, run_job
    from shammie.pipeline import options
    from shammie.pipeline.runner import RunOptions

    run = options.from_namespace(RunOptions, args)
    given = options.given_fields(RunOptions, args)
    overrides = list(args.overrides) + ([f"workers={run.workers}"] if "workers" in given else [])
    config = load_config(args.config, overrides, prepare_example=not args.dry_run)
    if args.dry_run:
        dry_run_checks(config)
        print(format_plan(config, plan(config), ray_address=run.ray_address))
        return 0
    run_job(config, ray_address=run.ray_address, progress=run.progress, overwrite=run.overwrite, wait=run.wait,
            verify=run.verify, shared_filesystem=run.shared_filesystem)
    print(f"job {config['name']!r} complete: {config.output}  (next: shammie report {config.output})")
    return 0
