import pytest

from fedsim.scenario import units


@pytest.mark.parametrize(
    "text,value",
    [
        ("20Mbit/s", 20e6),
        ("2.5MB/s", 20e6),
        ("100kbps", 1e5),
        ("1Gbit/s", 1e9),
        (3e6, 3e6),
        ("8Kibit/s", 8192.0),
    ],
)
def test_rates(text, value):
    assert units.parse_rate(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "text,value",
    [("50ms", 0.05), ("2s", 2.0), ("1.5min", 90.0), ("250us", 250e-6), ("1h", 3600.0), (0.1, 0.1)],
)
def test_durations(text, value):
    assert units.parse_duration(text) == pytest.approx(value)


def test_sizes_and_flops():
    assert units.parse_bytes("1.5MB") == 1.5e6
    assert units.parse_bytes("512KiB") == 512 * 1024
    assert units.parse_bytes("800kbit") == 1e5
    assert units.parse_flops("2GFLOP/s") == 2e9
    assert units.parse_flops("500MFLOPS") == 5e8


@pytest.mark.parametrize("bad", ["20 furlongs", "fast", "Mbit/s", "", True, [1]])
def test_bad_rates_raise(bad):
    with pytest.raises(ValueError):
        units.parse_rate(bad)
