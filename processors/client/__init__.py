"""The client side: produce records, read threads. Never imports the worker (nor faust)."""

from processors.client.client import Client, Delivery, OutcomeTimeout, RecordRefused

__all__ = ["Client", "Delivery", "OutcomeTimeout", "RecordRefused"]
