"""Scenario files: schema, units, overrides, variants, loading."""

from fedsim.scenario.load import (
    dump_scenario,
    load_scenario,
    parse_override,
    register_check,
    seed_scenarios,
    validate_doc,
    variant_scenarios,
    with_seeds,
)
from fedsim.scenario.schema import Scenario

__all__ = [
    "Scenario",
    "dump_scenario",
    "load_scenario",
    "parse_override",
    "register_check",
    "seed_scenarios",
    "validate_doc",
    "variant_scenarios",
    "with_seeds",
]
