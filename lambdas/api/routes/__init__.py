"""Route groups (Powertools ``Router``s): ``tasks`` (/v1/tasks...), ``models`` (/v1/models),
``compat`` (/v1alpha2). Each route reads the request through :mod:`lambdas.api.http` and calls
:mod:`lambdas.api.service`.
"""
