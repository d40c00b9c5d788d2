import pytest
import tomllib

from fedsim.errors import ScenarioError
from fedsim.scenario import (
    dump_scenario,
    load_scenario,
    parse_override,
    validate_doc,
    variant_scenarios,
)
from fedsim.scenario.reference import keys


def test_defaults_and_units(scenario_file):
    p = scenario_file(
        """
rounds = 3
[network]
server_up = "100Mbit/s"
[[network.devices]]
profile = "phone-4g"
up = "5Mbit/s"
rtt = "80ms"
flops = "2GFLOP/s"
"""
    )
    sc = load_scenario(p)
    assert sc.rounds == 3
    assert sc.network.server_up == 100e6
    d = sc.network.devices[0]
    assert (d.up, d.rtt, d.flops) == (5e6, 0.08, 2e9)
    assert sc.clients.count == 20  # default filled in


def test_overrides_typed(scenario_file):
    p = scenario_file("rounds = 3\n")
    sc = load_scenario(
        p, ["clients.count=50", "codec.uplink=q4:stochastic", "train.lr=0.1", 'name="x"']
    )
    assert sc.clients.count == 50
    assert sc.codec.uplink == "q4:stochastic"
    assert sc.train.lr == 0.1
    assert sc.name == "x"
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])


def test_resolved_round_trips(scenario_file):
    p = scenario_file('rounds = 4\n[network]\nserver_down = "2Gbit/s"\n')
    sc = load_scenario(p)
    text = dump_scenario(sc)
    again = validate_doc(tomllib.loads(text))
    assert again == sc


@pytest.mark.parametrize(
    "doc,field",
    [
        ({"colour": 1}, "colour"),
        ({"clients": {"count": -1}}, "clients.count"),
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"network": {"server_up": "20 furlongs"}}, "network.server_up"),
        ({"network": {"devices": [{"rtt": "soon"}]}}, "network.devices.0.rtt"),
        ({"data": {"partition": "zigzag"}}, "data.partition"),
    ],
)
def test_errors_name_the_field(doc, field):
    with pytest.raises(ScenarioError) as e:
        validate_doc(doc, file="f.toml")
    assert e.value.field == field
    assert str(e.value).startswith(f"f.toml: {field}: ")


def test_variants_deep_merge(scenario_file):
    p = scenario_file(
        """
name = "base"
rounds = 2
[codec]
uplink = "fp32"
[[variants]]
name = "q4"
codec = { uplink = "q4" }
[[variants]]
name = "more"
rounds = 5
"""
    )
    sc = load_scenario(p)
    vs = dict(variant_scenarios(sc))
    assert vs["q4"].codec.uplink == "q4" and vs["q4"].rounds == 2
    assert vs["more"].rounds == 5 and vs["more"].codec.uplink == "fp32"
    assert vs["q4"].name == "base/q4"


def test_reference_doc_lists_every_key():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text()
    missing = [k for k, *_ in keys() if f"`{k}`" not in doc]
    assert not missing, (
        f"docs/scenarios.md lacks {missing}; regenerate with python -m fedsim.scenario.reference"
    )


def test_every_shipped_scenario_validates(capsys):
    from pathlib import Path

    from fedsim.cli import main

    files = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.toml"))
    assert len(files) >= 9
    for f in files:
        assert main(["validate", str(f)]) == 0, capsys.readouterr().err
