"""fedsim.network: discrete-event network model, device profiles, transports, traffic log (no torch)."""
