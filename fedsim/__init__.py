"""fedsim: a federated-learning simulator whose bytes are exact and whose clock is simulated.

This module must stay light: ``import fedsim.codecs`` and ``import fedsim.network`` go
through it, and those layers must not pull in torch.
"""

__version__ = "0.1.0"
