"""Effect faults in the simulator: crash after claim, provider timeout after success,
duplicate completion; every effect completes exactly once, and the oracle catches a store
that takes late completions."""

from __future__ import annotations

import json

import pytest

from fynlo_sync.cli import main as fynlo
from fynlo_sync.sim.effects import FakeProvider, run_effect_faults


def test_the_fake_provider_performs_once_per_key() -> None:
    provider = FakeProvider()
    assert provider.call("t/k1", "o1") == provider.call("t/k1", "o1") == "printed o1"
    provider.call("t/k2", "o2")
    assert provider.calls == {"t/k1": 2, "t/k2": 1}
    assert provider.side_effects == {"t/k1": 1, "t/k2": 1}


@pytest.mark.parametrize("seed", range(1, 9))
def test_every_effect_completes_exactly_once_under_faults(seed: int) -> None:
    report = run_effect_faults(seed)
    assert report.ok, report.violations
    assert report.effects == 12 and report.performed == 12
    assert report.attempts >= report.effects


def test_every_fault_fires_over_the_seeds() -> None:
    fired = {
        name for seed in range(1, 9) for name, n in run_effect_faults(seed).faults.items() if n
    }
    assert fired == {"crash_after_claim", "timeout_after_success", "duplicate_completion"}
    again = [run_effect_faults(3).to_json() for _ in range(2)]
    assert again[0] == again[1]  # deterministic for a seed


def test_the_oracle_catches_a_store_without_the_fence() -> None:
    broken = [run_effect_faults(seed, broken_fence=True) for seed in range(1, 9)]
    assert any(not r.ok for r in broken)
    assert any("in the feed 2 times" in v for r in broken for v in r.violations)


def test_fynlo_sim_json_reports_effects(capsys: pytest.CaptureFixture[str]) -> None:
    assert fynlo(["sim", "--seed", "4", "--schedules", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    effects = out["effects"]
    assert effects["ok"] and effects["performed"] == effects["effects"] == 12
    assert set(effects["faults"]) == {
        "crash_after_claim",
        "timeout_after_success",
        "duplicate_completion",
    }
