"""`python -m mlbuild`."""

from mlbuild.cli import main

main()
