"""`python -m batch` is the same as the `jogg-batch` console script."""

from batch.console import main

main()
