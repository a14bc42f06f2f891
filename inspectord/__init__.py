"""inspectord: bare-metal hardware introspection for OpenStack Ironic."""

__version__ = "0.1.0"
