"""legalstream: stream a CrewAI legal agent's work over WebSocket."""

__version__ = "0.1.0"
