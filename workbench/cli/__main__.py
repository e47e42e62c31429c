"""``python -m workbench.cli``: what detached runners and cluster jobs start."""

from workbench.cli import main

main()
