"""fedsim.network: the discrete-event network model (no torch, no file writer).

Max-min link sharing (maxmin, links), device profiles with their power figures (devices),
availability, the round clock (rounds), energy integrated over a client's timeline (energy),
and a dry run of the model alone (dryrun). Run outputs (JSONL) live in fedsim.runtime.jsonl;
the real-TCP validation harness in benchmarks/tcp_harness.py.
"""
