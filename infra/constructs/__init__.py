"""CDK constructs, one per concern: network, storage, messaging, api, cluster, workloads, monitoring.

Each is a ``Construct`` with keyword-only typed arguments that exposes the resources it creates as public
attributes; the stacks in :mod:`infra.stacks` compose them and wire permissions with ``grant_*`` calls.
"""
