from pathlib import Path

import pytest

from core.settings import parse_settings


def test_flags_win_over_environment_and_defaults(tmp_path):
    env = {
        "REFINERY_PORT": "9000",
        "REFINERY_MODEL": "env-model",
        "REFINERY_DATA_DIR": str(tmp_path),
    }
    from_env = parse_settings([], env)
    assert (from_env.port, from_env.model, from_env.data_dir) == (9000, "env-model", tmp_path)
    flags = parse_settings(["--port", "9100", "--model", "flag-model", "--host", "0.0.0.0"], env)
    assert (flags.port, flags.model, flags.host) == (9100, "flag-model", "0.0.0.0")
    assert parse_settings([], {}).data_dir == Path("data/runtime").resolve()


def test_bad_values_are_refused():
    with pytest.raises(ValueError):
        parse_settings(["--port", "70000"], {})
    with pytest.raises(ValueError):
        parse_settings(["--device", "tpu"], {})
