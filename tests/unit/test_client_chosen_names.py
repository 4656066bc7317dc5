"""Names a client chooses (models) are remembered only while they are of a sane length: a
client sending a thousand megabyte-long names must not make corral keep them all."""

from __future__ import annotations

from corral.auth.principal import Principal
from corral.backends import models
from corral.limits.policy import LimitPolicy
from corral.settings import LimitSettings, ScopeLimits


def test_long_model_names_are_normalised_but_not_remembered() -> None:
    before = models._remembered.cache_info().currsize
    long_name = "Team/" + "x" * 5000
    assert models.normalize_model(long_name) == "team/" + "x" * 5000 + ":latest"
    assert models._remembered.cache_info().currsize == before
    assert models.normalize_model("Only-In-This-Test") == "only-in-this-test:latest"
    assert models._remembered.cache_info().currsize == before + 1


def test_limit_plans_are_remembered_per_model_only_where_a_limit_is_per_model() -> None:
    per_model = LimitPolicy(LimitSettings(key_model=ScopeLimits(requests=5)))
    key = Principal(1, "ci")
    long_model = "m" * 5000 + ":latest"
    checks = per_model.checks("10.0.0.1", key, long_model)
    assert len(checks) == 1 and long_model in checks[0].key
    assert per_model._memo == {}  # built for the request, not kept
    per_model.checks("10.0.0.1", key, "llama3.2:latest")
    assert len(per_model._memo) == 1
    # Without a per-model limit, every model of a client shares one plan.
    per_ip = LimitPolicy(LimitSettings(ip=ScopeLimits(requests=5)))
    for name in ("a:latest", "b:latest", long_model):
        per_ip.checks("10.0.0.1", None, name)
    assert len(per_ip._memo) == 1
