"""`python -m kiln` runs the command-line interface."""

from kiln.cli.main import main

main()
