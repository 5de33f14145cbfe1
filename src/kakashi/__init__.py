"""Kakashi: learn dance choreography from music."""

__version__ = "0.1.0"
