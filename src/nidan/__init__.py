"""nidan: a self-hosted two-step verification server."""

__version__ = "0.1.0"
