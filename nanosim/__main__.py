"""`python -m nanosim ...` = the `nanosim` command (for machines where it is not installed)."""
from nanosim.cli import run

run()
