"""Easel: serverless, event-driven Stable Diffusion on AWS.

The ``easel`` package is the shared core: the task contract, the config model, the naming of every AWS
resource, the task table access, the signed client SDK and the ``easel`` CLI. Lambdas, the queue agent, the
runtime and the CDK app all import their contracts from here and nowhere else.
"""

__version__ = "0.1.0"
