"""`python -m racenet` runs the CLI."""

from racenet.cli.main import main

main()
