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


def test_every_cli_reads_the_same_flags_and_variables(tmp_path, monkeypatch):
    """The studio, training, backup and evaluation CLIs share one parser for the data dir and
    the base model, so each honours REFINERY_DATA_DIR and REFINERY_MODEL the same way."""
    import argparse

    from core.comparison.evaluation_cli import BASE
    from core.operations.backup import parse_args as backup_args
    from core.settings import Settings
    from core.training.__main__ import parse as training_args

    monkeypatch.setenv("REFINERY_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("REFINERY_MODEL", "env-model")
    studio = parse_settings([])
    training = Settings.from_args(training_args(["list"]))
    backup = Settings.from_args(backup_args(["export", str(tmp_path / "out")]))
    evaluation = argparse.ArgumentParser()
    Settings.add_arguments(evaluation, groups=("data", "model"), rename=BASE)
    evaluated = Settings.from_args(evaluation.parse_args([]), rename=BASE)
    for settings in (studio, training, backup, evaluated):
        assert (settings.data_dir, settings.model) == (tmp_path / "env", "env-model")
    flagged = Settings.from_args(training_args(["--data-dir", str(tmp_path / "f"), "list"]))
    assert flagged.data_dir == tmp_path / "f"


def test_process_variables_are_named_before_they_are_read(monkeypatch):
    from core.settings import process_variable

    monkeypatch.setenv("REFINERY_TRAIN_PROCESSES", "3")
    assert process_variable("REFINERY_TRAIN_PROCESSES", "1") == "3"
    with pytest.raises(KeyError):
        process_variable("REFINERY_SOMETHING_ELSE")
