"""The stacks: they compose the constructs of :mod:`infra.constructs` and wire them with ``grant_*`` calls."""
