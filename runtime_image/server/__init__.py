"""The runtime server, in layers: ``http`` (routes, status codes) -> ``runner`` (one job at a time, state,
admission) -> ``pipelines`` (diffusers), with ``store`` + ``cache`` (models), ``lora``, ``samplers``,
``device`` (per-device choices), ``a1111``/``schemas``/``policy`` (the SD WebUI dialect) and ``tiny`` (a
random-weight model for tests and the local demo). Heavy imports (torch, diffusers) happen in the modules that
need them; importing this package is cheap.
"""
