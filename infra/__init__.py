"""Infrastructure: the CDK app (``infra.app``), its constructs and stacks, and the local stack."""
