"""`fedsim validate --show`: the resolved scenario, each quantity with its unit, still TOML."""

import tomllib

from fedsim.cli import main
from fedsim.scenario import load_scenario, validate_doc
from fedsim.scenario.reference import keys


def test_show_annotates_units_and_reloads(capsys):
    sets = [
        'network.server_up="100MB/s"',
        'network.devices=[{profile="phone-4g", up="2Mbit/s", rtt="80ms"}]',
        'server.deadline="2min"',
    ]
    args = ["validate", "quickstart", "--show"] + [x for s in sets for x in ("--set", s)]
    assert main(args) == 0
    out = capsys.readouterr().out
    text, status = out.rsplit("\n", 2)[0] + "\n", out.rsplit("\n", 2)[1]
    assert status.startswith("quickstart: ok")
    assert "server_up = 800000000.0  # 800 Mbit/s (100 MB/s)" in text
    assert "deadline = 120.0  # 2 min" in text
    assert "# up 2 Mbit/s (250 kB/s), rtt 80 ms" in text
    assert validate_doc(tomllib.loads(text)) == load_scenario("quickstart", sets)


def test_reference_names_unit_kinds_not_float():
    types = {key: typ for key, typ, *_ in keys()}
    assert types["network.server_up"].startswith("rate")
    assert types["runtime.worker_timeout"].startswith("duration")
    assert types["network.devices[].flops"].startswith("FLOP/s")
