"""kiln: turn an application into a sealed, single-purpose virtual machine image."""

__version__ = "0.1.0"
