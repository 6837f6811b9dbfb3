"""AWS Lambda functions: ``api`` (the REST API) and ``webhooks`` (result callbacks)."""
