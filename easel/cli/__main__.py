"""``python -m easel.cli``: the same as the ``easel`` console script (used by local mode's supervisor)."""

from easel.cli import main

main()
