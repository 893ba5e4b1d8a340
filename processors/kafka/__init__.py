"""Reaching the cluster: connection arguments (SASL/TLS) and the topics the worker needs."""
