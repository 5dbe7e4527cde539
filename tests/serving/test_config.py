from pathlib import Path

import pytest

from serving.config import ServingConfig, parse_config


def test_flags_win_over_environment_variables() -> None:
    env = {
        "SLIPWAY_MODEL": "/models/a.onnx",
        "SLIPWAY_PORT": "9100",
        "SLIPWAY_RELEASE_ID": "7",
        "SLIPWAY_MODEL_NAME": "iris",
    }
    config = parse_config(["--port", "9200", "--version", "2.0"], env)
    assert config == ServingConfig(
        model=Path("/models/a.onnx"), port=9200, model_name="iris", version="2.0", release_id="7"
    )


def test_missing_model_and_bad_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config([], {})
    assert "--model (or SLIPWAY_MODEL) is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(["--model", "m.onnx"], {"SLIPWAY_PORT": "eighty"})
    assert "argument --port: invalid int value: 'eighty'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(["--model", "m.onnx", "--port", "70000"], {})
    assert "--port must be between 1 and 65535, got 70000" in capsys.readouterr().err
