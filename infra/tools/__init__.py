"""Small build-time tools for the infrastructure code."""
