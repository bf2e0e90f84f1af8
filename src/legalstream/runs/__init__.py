"""Runs: one question answered by the agent in a worker thread, its events numbered and published.

``manager`` starts, follows and cancels runs (the only door to ``agent/``);
``bridge`` hands a run's events from its thread to the event loop; ``threads``
are the worker threads runs execute in.
"""

from legalstream.runs.manager import AGENT_NAME, TASK_NAME, Run, RunManager, ServerBusy

__all__ = ["AGENT_NAME", "TASK_NAME", "Run", "RunManager", "ServerBusy"]
