"""A worker's codec threads follow its torch thread budget unless FEDSIM_CODEC_THREADS is set."""

from __future__ import annotations

import pytest
from fedsim.codecs import parallel

from fedsim.runtime.executors.actor import build_runner

SCENARIO = """
name = "t"
[data]
dataset = "digits"
[model]
name = "mlp"
[clients]
count = 4
per_round = 2
"""


@pytest.fixture
def codec_threads():
    before = parallel.threads()
    yield
    parallel.set_threads(before)


@pytest.mark.parametrize("env, want", [(None, 1), ("3", 5)])
def test_build_runner_sets_codec_threads_unless_the_environment_does(
    monkeypatch, codec_threads, env, want
):
    import torch

    torch_threads = torch.get_num_threads()
    parallel.set_threads(5)
    if env is None:
        monkeypatch.delenv("FEDSIM_CODEC_THREADS", raising=False)
    else:
        monkeypatch.setenv("FEDSIM_CODEC_THREADS", env)
    try:
        build_runner(SCENARIO, 1)
        assert parallel.threads() == want  # set from the budget, or left to the environment
    finally:
        torch.set_num_threads(torch_threads)
