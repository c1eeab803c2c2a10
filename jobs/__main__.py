from shammie.jobs.cli import entry

entry()
