import sys

from shammie.jobs.cli import main

sys.exit(main())
