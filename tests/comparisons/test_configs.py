"""Engine configs: every setting has a reason; core counts are filled in the same way."""

from __future__ import annotations

import pytest
from taskbench.comparisons.solutions import CONFIG_DIR, EngineConfig, load_config

CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def test_every_engine_but_the_coming_one_has_a_config():
    assert {"pandas", "duckdb", "spark", "dask"} <= set(CONFIGS)


@pytest.mark.parametrize("engine", CONFIGS)
def test_config_loads_and_every_setting_has_a_reason(engine):
    config = load_config(engine, cores=3)
    for section in config.sections.values():
        for setting in section.values():
            assert len(setting.reason) > 15
    assert config.to_dict()["cores"] == 3


def test_cores_are_filled_in_everywhere():
    assert load_config("duckdb", cores=3).get("session", "threads") == 3
    spark = load_config("spark", cores=3).section("session")
    assert spark["spark.master"] == "local[3]"
    assert spark["spark.sql.shuffle.partitions"] == 12
    assert spark["spark.sql.session.timeZone"] == "UTC"
    assert spark["spark.driver.memory"]
    assert load_config("dask", cores=3).get("cluster", "n_workers") == 3


def test_a_setting_without_a_reason_is_refused(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text("[session]\nthreads = 4\n")
    with pytest.raises(ValueError, match="must be"):
        load_config("x", path=path)
    path.write_text('[session]\nthreads = { value = 4, reason = " " }\n')
    with pytest.raises(ValueError, match="empty reason"):
        load_config("x", path=path)


def test_an_engine_without_a_file_has_an_empty_config():
    config = load_config("no-such-engine", cores=2)
    assert config == EngineConfig("no-such-engine", 2)
    assert config.section("session") == {}


def test_an_override_carries_its_reason():
    config = load_config("spark", cores=2).with_value(
        "session", "spark.master", "spark://127.0.0.1:7077", "given with --spark-master"
    )
    entry = config.to_dict()["settings"]["session"]["spark.master"]
    assert entry == {"value": "spark://127.0.0.1:7077", "reason": "given with --spark-master"}
