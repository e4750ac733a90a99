"""`python -m nanosim ...` = the `nanosim` command (for machines where it is not installed)."""
import sys

from nanosim.cli import main

sys.exit(main())
