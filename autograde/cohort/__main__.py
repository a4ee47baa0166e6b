import sys

# The importable package's main: Dask sends tasks by reference to autograde.cohort.task.grade_task (a worker
# imports it), and Ctrl-C must stop the gradings that module started.
from autograde.cohort import main

sys.exit(main())
