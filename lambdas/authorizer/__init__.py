"""The API-key authorizer Lambda (REQUEST authorizer of the key API)."""
