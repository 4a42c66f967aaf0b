"""Leaves: the error hierarchy, redaction of secrets, the gRPC backoff, and the fork
parking protocol. They import nothing of grpc_pool."""
