"""``load_data`` dispatches a spec string to the right source."""

from __future__ import annotations

from pathlib import Path

import pytest

from ultrathink.data import generate, load_data, parse_synthetic_spec
from ultrathink.data.loaders import save_parquet
from ultrathink.errors import ConfigError, DataSourceError


def test_embedded_dataset() -> None:
    assert load_data("nasdaq").name == "embedded:nasdaq"


def test_synthetic_default_and_with_parameters() -> None:
    assert len(load_data("synthetic")) == 1000

    data = load_data("synthetic:n_bars=50,symbols=AAA+BBB")

    assert (len(data), data.symbols) == (100, ("AAA", "BBB"))
    assert (
        data.sha256()
        == generate(parse_synthetic_spec("synthetic:n_bars=50,symbols=AAA+BBB")).sha256()
    )


def test_bad_synthetic_spec_is_config_error() -> None:
    with pytest.raises(ConfigError, match="nbars"):
        load_data("synthetic:nbars=5")


def test_file_path(tmp_path: Path) -> None:
    path = tmp_path / "bars.pq"
    save_parquet(load_data("synthetic:n_bars=20"), path)

    assert len(load_data(str(path))) == 20


def test_missing_file_with_data_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="not found"):
        load_data(str(tmp_path / "nope.csv"))


def test_existing_file_with_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "bars.txt"
    path.write_text("x")

    with pytest.raises(DataSourceError, match="unknown suffix"):
        load_data(str(path))


def test_unknown_spec_says_what_is_accepted() -> None:
    with pytest.raises(DataSourceError, match=r"unknown data spec 'sp600'.*sp500.*synthetic.*csv"):
        load_data("sp600")
