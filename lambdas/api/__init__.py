"""The API Lambda: a thin Powertools REST resolver (``app.py``, ``routes/``) over plain domain functions
(``service.py``), with its dependencies (settings, config, table, topic, presigner) built lazily on the first
invocation (``deps.py``). The local gateway invokes the very same ``lambdas.api.app.handler``.
"""
