"""The API tier: a Kubernetes-compatible, read-only search API over the SQL store."""
