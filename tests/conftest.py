import os

import pytest

# Keep test processes to one torch thread each: deterministic and fair on 2-core CI.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def scenario_file(tmp_path):
    """Write a scenario TOML text into a file and return its path."""

    def write(text: str, name: str = "s.toml"):
        p = tmp_path / name
        p.write_text(text)
        return p

    return write
