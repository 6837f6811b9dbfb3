"""The webhooks Lambda (signed result callbacks). Filled in by its own issue."""
