"""Schedules over the round engine: synchronous rounds (`sync.py`) and FedBuff (`fedbuff.py`).

A schedule decides when clients are selected and when the server aggregates; everything else
(tasks, acceptance, aggregation through the method's `aggregate`, rows, checkpoints) is the
engine's (`server.py`, `ledger.py`, `coordinator.py`).
"""
