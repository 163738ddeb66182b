"""Generated DDL for each dialect: the SQL the real Hologres and Redshift get, tested as text."""

from __future__ import annotations

from pipeline.schema import Column
from pipeline.warehouse import ddl

BOOK_ORDER = [Column("order_id"), Column("user_id", "long"), Column("book_name"), Column("order_amt", "long")]


def test_hologres_gets_its_table_properties_as_calls_after_the_create():
    statements = ddl.create_table(
        "public", "book_order", BOOK_ORDER, "hologres", primary_key=["order_id"],
        table_properties={"orientation": "column", "bitmap_columns": ["order_id", "user_id"],
                          "time_to_live_in_seconds": 3153600000},
    )
    assert ddl.render(statements).splitlines() == [
        'CREATE TABLE IF NOT EXISTS "public"."book_order" ("order_id" text NOT NULL, "user_id" bigint, '
        '"book_name" text, "order_amt" bigint, PRIMARY KEY ("order_id"));',
        "CALL set_table_property('\"public\".\"book_order\"', 'orientation', 'column');",
        "CALL set_table_property('\"public\".\"book_order\"', 'bitmap_columns', 'order_id,user_id');",
        "CALL set_table_property('\"public\".\"book_order\"', 'time_to_live_in_seconds', '3153600000');",
    ]


def test_plain_postgresql_gets_no_hologres_or_redshift_clauses():
    text = ddl.render(ddl.create_table("public", "t", BOOK_ORDER, "postgresql", table_properties={"orientation": "x"},
                                       distkey="user_id", sortkey=["user_id"]))
    assert "CALL" not in text and "DISTKEY" not in text and "SORTKEY" not in text


def test_redshift_gets_distkey_sortkey_varchar_and_super():
    columns = [Column("sensorid", "long"), Column("status"), Column("payload", "json"), Column("at", "timestamp")]
    text = ddl.render(ddl.create_table("sensor_schema", "sensor_data", columns, "redshift", distkey="sensorid",
                                       sortkey=["at", "sensorid"]))
    assert text == ('CREATE TABLE IF NOT EXISTS "sensor_schema"."sensor_data" ("sensorid" bigint, '
                    '"status" varchar(65535), "payload" super, "at" timestamptz) '
                    'DISTKEY("sensorid") SORTKEY("at", "sensorid");')


def test_a_hostile_table_name_stays_inside_its_quotes_in_a_hologres_call():
    from pipeline.warehouse.dialects.hologres import table_property_calls

    text = ddl.render(table_property_calls("public", "x'); DROP TABLE y; --", {"orientation": "row"}))
    assert text == "CALL set_table_property('\"public\".\"x''); DROP TABLE y; --\"', 'orientation', 'row');"


def test_column_options_override_the_mapped_type():
    text = ddl.render(ddl.create_table("s", "t", [Column("amount", "double")], "postgresql",
                                       column_options={"amount": "numeric(12,2)"}))
    assert '"amount" numeric(12,2)' in text
