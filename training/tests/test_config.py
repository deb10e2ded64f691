"""The recipe fields a training job may override (TUNABLE): each is a real field of its type, each
override is checked and named when refused, and what the service passes as --set reads back exactly."""
import dataclasses

import pytest
import yaml

from training.config import (
    TUNABLE,
    OverrideError,
    TrainConfig,
    check_override,
    check_overrides,
    load_config,
    override_arg,
)


def _default(key: str):
    node = TrainConfig()
    for part in key.split("."):
        assert part in {f.name for f in dataclasses.fields(node)}, f"{key} is not a recipe field"
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("key", sorted(TUNABLE))
def test_every_tunable_key_is_a_recipe_field_of_its_type_and_its_default_is_allowed(key):
    default = _default(key)
    assert type(default) is TUNABLE[key].kind
    assert check_override(key, default) == default


@pytest.mark.parametrize("key, value", [
    ("epochs", 2), ("optim.lr", 1e-5), ("optim.lr", 3), ("optim.lr", 2.5e-12 * 1e10), ("optim.weight_decay", 0),
    ("model.stem", "s1"), ("class_balance", "sampler"), ("augment.flip", False), ("seed", 2**31 - 1),
])
def test_an_override_reads_back_as_the_same_value_through_set(tmp_path, key, value):
    checked = check_override(key, value)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 30\n")
    cfg = load_config(recipe, [override_arg(key, checked)])
    assert _value(cfg, key) == checked and type(_value(cfg, key)) is type(checked)
    assert yaml.safe_load(override_arg(key, checked).split("=", 1)[1]) == checked


def _value(cfg, key):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("overrides, message", [
    ({"lr": 0.1}, "override lr: not a tunable recipe field"),
    ({"data.path": "/etc/passwd"}, "override data.path: not a tunable recipe field"),
    ({"out_dir": "/tmp"}, "override out_dir: not a tunable"),
    ({"epochs": 0}, "override epochs: must be an integer >= 1 and <= 1000, not 0"),
    ({"epochs": True}, "override epochs: must be an integer >= 1 and <= 1000, not true"),
    ({"epochs": "3"}, "override epochs: must be an integer"),
    ({"optim.lr": 0.0}, "override optim.lr: must be a number > 0 and <= 10, not 0"),
    ({"optim.lr": float("nan")}, "override optim.lr: must be a number"),
    ({"model.dropout": 0.95}, "override model.dropout: must be a number >= 0 and <= 0.9, not 0.95"),
    ({"model.stem": "s2"}, "override model.stem: must be one of standard, s1pool, s1, not 's2'"),
    ({"augment.flip": "yes"}, "override augment.flip: must be true or false"),
])
def test_a_bad_override_is_refused_naming_its_key(overrides, message):
    with pytest.raises(OverrideError) as refused:
        check_overrides({"epochs": 2, **overrides})
    assert str(refused.value).startswith(message)
    assert refused.value.key == next(iter(overrides))


def test_a_float_written_without_a_dot_is_still_a_number_on_the_command_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim: {lr: 0.1}\n")
    assert load_config(recipe, ["optim.lr=1e-4"]).optim.lr == 1e-4  # YAML 1.1 reads 1e-4 as a string
    with pytest.raises(ValueError, match="optim.lr: 'fast' is not a number"):
        load_config(recipe, ["optim.lr=fast"])
