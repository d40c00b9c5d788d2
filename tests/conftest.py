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


class Crash(Exception):
    """Raised in place of a process kill, right after a checkpoint was written."""


@pytest.fixture
def crash_and_resume(monkeypatch):
    """Run `scenario` into `out`, stop it right after the round-`after` checkpoint, then
    resume it there; returns the resumed run's summary."""
    from fedsim.runtime import coordinator as coord

    def run(scenario, out, after: int = 2) -> dict:
        real = coord.Coordinator._maybe_checkpoint

        async def crash_after(self, *args, **kwargs):
            await real(self, *args, **kwargs)
            if self.state.round == after:
                raise Crash

        monkeypatch.setattr(coord.Coordinator, "_maybe_checkpoint", crash_after)
        with pytest.raises(Crash):
            coord.Coordinator(scenario, out).run()
        monkeypatch.setattr(coord.Coordinator, "_maybe_checkpoint", real)
        return coord.Coordinator(scenario, out, resume=True).run()

    return run
