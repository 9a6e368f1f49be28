"""Config loading: every shipped config validates; bad keys and values name the field path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dense_reward.config import Config, ConfigError
from tests.support.paths import CONFIGS as ROOT_CONFIGS
from tests.support.paths import TINY_CONFIG
from tune_jobs.config import load_sweep_config as load_config
from tune_jobs.config import validate_sweep_config as validate_config

CONFIGS = sorted(ROOT_CONFIGS.glob("*.yaml"))


def _tiny_dict() -> dict:
    return yaml.safe_load(TINY_CONFIG.read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    assert config.shaping.sources
    assert config.search.trials >= 1


def test_shipped_configs_include_the_four_named() -> None:
    assert {"demo.yaml", "hh_rlhf.yaml", "ultrafeedback.yaml", "tiny.yaml"} <= {p.name for p in CONFIGS}


def test_negative_kl_coef_names_field_and_value() -> None:
    data = _tiny_dict()
    data["ppo"]["kl_coef"] = -1
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    assert "ppo.kl_coef: must be >= 0, got -1" in str(info.value)


def test_unknown_key_names_full_path() -> None:
    data = _tiny_dict()
    data["ppo"]["klcoef"] = 0.1
    with pytest.raises(ConfigError, match=r"ppo\.klcoef: unknown key \(did you mean 'kl_coef'\?"):
        validate_config(data)


def test_a_misspelt_key_gets_the_nearest_known_key_of_its_own_section() -> None:
    data = _tiny_dict()
    data["shaping"]["weight"] = {"sparse": 1.0}
    data["models"]["reward"]["max_lenght"] = 10
    data["search"]["trails"] = 3
    data["ppo"]["zzz"] = 1
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    message = str(info.value)
    assert "shaping.weight: unknown key (did you mean 'weights'?" in message
    assert "models.reward.max_lenght: unknown key (did you mean 'max_length'?" in message
    assert "search.trails: unknown key (did you mean 'trials'?" in message
    assert "ppo.zzz: unknown key (check the spelling;" in message


def test_unknown_source_and_off_simplex_weights() -> None:
    data = _tiny_dict()
    data["shaping"]["sources"] = ["sparse", "telepathy"]
    with pytest.raises(ConfigError, match=r"shaping\.sources: unknown source\(s\) \['telepathy'\]"):
        validate_config(data)
    data = _tiny_dict()
    data["shaping"]["weights"] = {"sparse": 0.5, "attention": 0.4}
    with pytest.raises(ConfigError, match=r"shaping\.weights: weights must sum to 1 \(the simplex\), got 0.9"):
        validate_config(data)


def test_missing_required_section() -> None:
    data = _tiny_dict()
    del data["models"]["policy"]
    with pytest.raises(ConfigError, match=r"models\.policy: required field is missing"):
        validate_config(data)


def test_mini_batch_larger_than_batch_is_rejected() -> None:
    data = _tiny_dict()
    data["ppo"]["mini_batch_size"] = 64
    with pytest.raises(ConfigError, match="mini_batch_size"):
        validate_config(data)


def test_knob_bounds_checked() -> None:
    data = _tiny_dict()
    data["search"]["knobs"] = {"shaping.tau": {"low": 2.0, "high": 1.0}}
    with pytest.raises(ConfigError, match=r"search\.knobs\.shaping\.tau: low must be < high"):
        validate_config(data)
    data["search"]["knobs"] = {"ppo.gamma": {"low": 0.5, "high": 1.0}}
    with pytest.raises(ConfigError, match=r"unknown knob"):
        validate_config(data)


def test_with_overrides_validates_again(tiny_config) -> None:
    changed = tiny_config.with_overrides({"ppo.kl_coef": 0.2, "shaping.tau": 0.5})
    assert changed.ppo.kl_coef == 0.2 and changed.shaping.tau == 0.5
    assert tiny_config.ppo.kl_coef != 0.2
    with pytest.raises(ConfigError, match="ppo.kl_coef"):
        tiny_config.with_overrides({"ppo.kl_coef": -3})
    with pytest.raises(ConfigError, match="ppo.nope: no such field"):
        tiny_config.with_overrides({"ppo.nope": 1})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tune_jobs.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_prints_a_config_warning_as_one_line_naming_the_field(tmp_path: Path) -> None:
    data = _tiny_dict()
    data["shaping"]["sources"] = ["sparse", "shap"]
    data["shaping"]["shap"] = {"max_evals": 8}
    data["ppo"]["max_new_tokens"] = 16
    config = tmp_path / "coarse.yaml"
    config.write_text(yaml.safe_dump(data))
    result = _cli("config", "validate", str(config))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "max_evals" in line]
    assert len(lines) == 1
    assert lines[0].startswith("dense-reward config: warning: shaping.shap.max_evals=8 is far below the ~256")
    # Only the message: not the library line that raised it.
    assert "pydantic" not in result.stderr and "validate_python" not in result.stderr


def test_cli_config_validate_ok_and_errors(tmp_path: Path) -> None:
    ok = _cli("config", "validate", "tune_jobs/configs/tiny.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    data = _tiny_dict()
    data["ppo"]["kl_coef"] = -1
    data["shaping"]["colour"] = "blue"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = _cli("config", "validate", str(bad))
    assert result.returncode == 2
    assert "ppo.kl_coef: must be >= 0, got -1" in result.stderr
    assert "shaping.colour: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_help_lists_every_command() -> None:
    result = _cli("--help")
    assert result.returncode == 0
    for name in ["sweep", "submit", "results", "final", "explain", "ui", "demo", "config"]:
        assert name in result.stdout


def test_library_config_names_the_sweep_sections_it_does_not_read(tmp_path) -> None:
    from dense_reward.config import load_config as load_library_config

    sweep = load_config(ROOT_CONFIGS / "tiny.yaml")
    library = sweep.library_config()
    assert type(library) is Config and library.shaping == sweep.shaping
    with pytest.raises(ConfigError, match=r"search: a sweep section.*tune_jobs.config.load_sweep_config"):
        load_library_config(ROOT_CONFIGS / "tiny.yaml")


def test_simplex_errors_name_the_exact_field() -> None:
    data = yaml.safe_load((ROOT_CONFIGS / "tiny.yaml").read_text())
    data["shaping"]["weights"] = {"sparse": 0.7, "attention": 0.2}
    with pytest.raises(ConfigError, match=r"shaping\.weights: weights must sum to 1"):
        validate_config(data)


def test_a_shap_budget_far_below_m_squared_warns_naming_the_field(tiny_config) -> None:
    import warnings

    data = tiny_config.library_config().model_dump()
    data["shaping"]["sources"] = ["sparse", "shap"]
    data["ppo"]["max_new_tokens"] = 48
    data["shaping"]["shap"]["max_evals"] = 64  # 48 tokens: exact Owen values need ~48^2 = 2304 evaluations
    with pytest.warns(UserWarning, match=r"shaping\.shap\.max_evals=64 is far below the ~2304 RM evaluations"):
        Config.model_validate(data)
    quiet = [
        {"shap": {"max_evals": 600}},  # at least a quarter of M^2
        {"sources": ["sparse", "lime"]},  # no shap in the mix
    ]
    for change in quiet:
        shaping = {**data["shaping"], **change}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Config.model_validate({**data, "shaping": shaping})


def test_demo_trains_a_value_head_and_draws_heatmaps_for_its_last_epoch_only() -> None:
    from tune_jobs.trainable import draws_heatmaps

    demo = load_config(ROOT_CONFIGS / "demo.yaml")
    assert demo.models.value.head_on_policy is True
    assert demo.evaluation.heatmap_epochs == "last"
    epochs = demo.ppo.epochs
    assert [draws_heatmaps(demo, epoch) for epoch in range(1, epochs + 1)] == [False] * (epochs - 1) + [True]
    every = demo.with_overrides({"evaluation.heatmap_epochs": "every"})
    assert all(draws_heatmaps(every, epoch) for epoch in range(1, epochs + 1))
    none = demo.with_overrides({"evaluation.heatmap_samples": 0})
    assert not any(draws_heatmaps(none, epoch) for epoch in range(1, epochs + 1))


def test_bad_heatmap_epochs_names_the_field() -> None:
    data = _tiny_dict()
    data["evaluation"]["heatmap_epochs"] = "first"
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    assert "evaluation.heatmap_epochs" in str(info.value)
    assert "first" in str(info.value)
