"""`python -m batch` is the same as the `jogg-batch` console script."""

from batch.cli import main

main()
