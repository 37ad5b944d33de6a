"""``python -m caboose``: the command line."""

from caboose.cli import main

main()
