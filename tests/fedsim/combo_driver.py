"""Runs many tiny scenarios in one process (for tests/fedsim/test_combinations.py).

    python combo_driver.py CASES.json OUT MODE

CASES.json: {name: scenario document}. MODE: inproc | ipc | ray | resume. `resume` runs each
case in process, stops it right after its round-2 checkpoint (as a crash would), and resumes
it from that checkpoint. `ray` starts one local Ray instance for all cases. Each case writes
OUT/<name>/ (summary.json, metrics.jsonl, traffic.jsonl).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fedsim.runtime import coordinator as coord
from fedsim.scenario.load import validate_doc


class Crash(Exception):
    pass


def run_case(doc: dict, out: Path, mode: str) -> None:
    doc = json.loads(json.dumps(doc))
    rt = doc.setdefault("runtime", {})
    if mode == "ipc":
        rt.update(transport="ipc", workers=2)
    elif mode == "ray":
        rt.update(executor="ray", workers=2)
    sc = validate_doc(doc)
    if mode != "resume":
        coord.Coordinator(sc, out).run()
        return
    real = coord.Coordinator._maybe_checkpoint

    async def crash_after_two(self, *args, **kwargs):
        await real(self, *args, **kwargs)
        if self.state.round == 2:
            raise Crash

    coord.Coordinator._maybe_checkpoint = crash_after_two
    try:
        coord.Coordinator(sc, out).run()
        raise AssertionError("the run did not reach its round-2 checkpoint")
    except Crash:
        pass
    finally:
        coord.Coordinator._maybe_checkpoint = real
    assert not (out / "summary.json").exists()
    coord.Coordinator(sc, out, resume=True).run()


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text())
    out, mode = Path(sys.argv[2]), sys.argv[3]
    if mode == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for name, doc in cases.items():
        run_case(doc, out / name, mode)
        print(name, flush=True)


if __name__ == "__main__":
    main()
