"""Shipped scenarios: found by bare name, listed, copied out by `fedsim init`."""

from pathlib import Path

import pytest

from fedsim.cli import main
from fedsim.errors import ScenarioError
from fedsim.scenario import load_scenario
from fedsim.scenario.shipped import resolve_scenario_path, shipped_dir, shipped_scenarios

REPO = Path(__file__).resolve().parents[2]


def test_shipped_are_the_repository_scenarios():
    names = shipped_scenarios()
    assert set(names) == {p.stem for p in (REPO / "scenarios").glob("*.toml")}
    assert shipped_dir().resolve() == (REPO / "scenarios").resolve()  # editable install


def test_bare_name_resolves_to_shipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_scenario_path("quickstart") == shipped_scenarios()["quickstart"]
    assert load_scenario("quickstart", ["rounds=1"]).name == "quickstart"
    (tmp_path / "quickstart").mkdir()  # a folder of that name does not shadow it
    assert load_scenario("quickstart").name == "quickstart"
    (tmp_path / "quickstart").rmdir()
    (tmp_path / "quickstart").write_text('name = "mine"\n')  # a local file wins
    assert load_scenario("quickstart").name == "mine"


@pytest.mark.parametrize("arg", ["quickstart.toml", "sub/quickstart", "nosuchscenario"])
def test_paths_and_unknown_names_are_not_looked_up(tmp_path, monkeypatch, arg):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ScenarioError) as err:
        load_scenario(arg)
    assert arg in str(err.value)
    if arg == "nosuchscenario":
        assert "shipped: " in str(err.value) and "quickstart" in str(err.value)


def test_list_scenarios(capsys):
    assert main(["list", "scenarios"]) == 0
    out = capsys.readouterr().out
    assert "quickstart" in out and "heterogeneous" in out


def test_init_copies_and_refuses_overwrite(tmp_path, capsys):
    dest = tmp_path / "mine"
    assert main(["init", str(dest)]) == 0
    copied = sorted(p.name for p in dest.glob("*.toml"))
    assert copied == sorted(p.name for p in shipped_scenarios().values())
    assert (dest / "quickstart.toml").read_bytes() == shipped_scenarios()["quickstart"].read_bytes()
    (dest / "quickstart.toml").write_text("# edited\n")
    capsys.readouterr()
    assert main(["init", str(dest)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert (dest / "quickstart.toml").read_text() == "# edited\n"
    assert main(["init", str(dest), "--force"]) == 0
    assert (dest / "quickstart.toml").read_bytes() == shipped_scenarios()["quickstart"].read_bytes()
