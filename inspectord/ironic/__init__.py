"""Ironic: the asynchronous client and how it finds and authenticates to Ironic."""
