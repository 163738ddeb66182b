"""Each dialect's strategy per mode, and detection that refuses a config for the wrong server (docs/targets.md)."""

from __future__ import annotations

import psycopg
import pytest

from pipeline.errors import WarehouseError
from pipeline.warehouse.dialects import detect
from pipeline.warehouse.dialects.hologres import Hologres
from pipeline.warehouse.dialects.redshift import Redshift

MODES = ("insert_direct", "append", "merge", "insert", "truncate_insert", "replace")
V13 = "Hologres 1.3.45 (tag: 1.3.45 build: Release), compatible with PostgreSQL 11.3"
V22 = "Hologres 2.2.11 (tag: 2.2.11 build: Release), compatible with PostgreSQL 11.3"


@pytest.mark.parametrize("mode", MODES)
def test_hologres_2_is_exact_in_every_mode(mode: str) -> None:
    assert Hologres(V22).strategy(mode).exact


@pytest.mark.parametrize("mode", ["insert_direct", "append", "insert", "truncate_insert"])
def test_hologres_1_cannot_commit_several_dml_statements_so_those_modes_are_refused_with_the_fix(mode: str) -> None:
    strategy = Hologres(V13).strategy(mode)

    assert not strategy.exact
    assert "V2.0" in strategy.fix and "hg_experimental_enable_transaction" in strategy.fix and "merge" in strategy.fix


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_hologres_1_merges_by_fixed_copy_and_replaces_by_a_ddl_swap(mode: str) -> None:
    assert Hologres(V13).strategy(mode).exact


def test_a_stream_into_hologres_needs_multi_dml_and_does_not_merge() -> None:
    assert Hologres(V22).strategy("append", stream=True).exact
    assert not Hologres(V13).strategy("append", stream=True).exact
    assert "temporary table" in Hologres(V22).strategy("merge", stream=True).fix


@pytest.mark.parametrize("mode", MODES)
def test_redshift_is_exact_in_every_mode_through_s3(mode: str) -> None:
    strategy = Redshift("PostgreSQL 8.0.2 on i686-pc-linux-gnu, Redshift 1.0.122914").strategy(mode)

    assert strategy.exact and "S3" in strategy.name


def test_redshift_cuts_text_to_its_widest_varchar_in_bytes() -> None:
    fitted = Redshift().fit_text("é" * 40_000)  # 80,000 bytes

    assert fitted is not None and len(fitted.encode()) <= 65535 and "cut to 65535 bytes of 80000" in fitted
    assert Redshift().fit_text("short") == "short"


@pytest.mark.stack
@pytest.mark.parametrize(("url", "wanted", "found"), [("hologres_url", "postgresql", "Hologres 2.2.11"),
                                                       ("redshift_url", "hologres", "Redshift 1.0"),
                                                       ("hologres_url", "redshift", "Hologres 2.2.11")])
def test_a_config_for_another_kind_of_server_is_refused_naming_both(stack, url: str, wanted: str, found: str) -> None:
    with psycopg.connect(getattr(stack, url), autocommit=True) as conn, pytest.raises(WarehouseError) as raised:
        detect(conn, wanted)

    assert f"out.type is {wanted}" in str(raised.value) and found in str(raised.value)


@pytest.mark.stack
def test_the_stand_ins_are_detected_as_their_targets(stack) -> None:
    with psycopg.connect(stack.hologres_url, autocommit=True) as holo, \
            psycopg.connect(stack.redshift_url, autocommit=True) as red:
        assert detect(holo, "hologres").describe() == "Hologres 2.2.11"
        assert detect(red, "redshift").describe().startswith("Redshift 1.0.")
        assert Hologres(detect(holo, "hologres").version).multi_dml
