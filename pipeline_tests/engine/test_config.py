"""The config language: Embulk's YAML, environment interpolation, errors that name the YAML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config
from pipeline.errors import ConfigError

TUTORIAL = """
in:
  type: s3
  bucket: bob-embulk-demo
  path_prefix: original-data/
  endpoint: http://127.0.0.1:9000
  access_key_id: '{{ env.AWS_ACCESS_KEY_ID }}'
  secret_access_key: '{{ env.AWS_SECRET_ACCESS_KEY }}'
  parser:
    charset: UTF-8
    newline: CRLF
    type: csv
    delimiter: ','
    quote: '"'
    escape: '"'
    trim_if_not_quoted: false
    skip_header_lines: 1
    allow_extra_columns: false
    allow_optional_columns: false
    columns:
    - {name: order_id, type: string}
    - {name: user_id, type: long}
    - {name: order_amt, type: long}
out:
  type: postgresql
  host: '${HOLO_HOST}'
  port: 80
  user: '{{ env.HOLO_USER }}'
  password: '{{ env.HOLO_PASSWORD }}'
  database: demo
  table: book_order
  mode: insert_direct
"""

ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "s3cr3t-aws",
    "HOLO_HOST": "holo.example.com",
    "HOLO_USER": "bob",
    "HOLO_PASSWORD": "s3cr3t-holo",
}


def parse(text: str, env: dict[str, str] | None = None) -> config.PipelineConfig:
    return config.parse(config.load_yaml(text), name="book_order", environ=ENV if env is None else env)


def error_of(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, env)
    return caught.value


def test_the_tutorial_config_works_as_written_with_secrets_from_the_environment():
    # A remote Hologres with no sslmode gets TLS by default, so the tutorial needs no edit.
    cfg = parse(TUTORIAL)
    assert cfg.input.bucket == "bob-embulk-demo"
    assert cfg.input.aws.access_key_id == "AKIDEXAMPLE"
    assert cfg.input.parser.skip_header_lines == 1
    assert [c.name for c in cfg.input.parser.columns] == ["order_id", "user_id", "order_amt"]
    assert cfg.output.schema == "public" and cfg.output.table == "book_order"
    assert "host=holo.example.com" in cfg.output.conninfo and "port=80" in cfg.output.conninfo
    assert "dbname=demo" in cfg.output.conninfo


def test_secrets_never_appear_in_the_repr_of_a_config():
    text = repr(parse(TUTORIAL))
    assert "s3cr3t-aws" not in text and "s3cr3t-holo" not in text and "AKIDEXAMPLE" not in text


def test_a_missing_environment_variable_names_the_key_and_the_variable():
    env = dict(ENV)
    del env["HOLO_PASSWORD"]
    error = error_of(TUTORIAL, env)
    assert error.path == "out.password"
    assert "HOLO_PASSWORD" in str(error)


def test_liquid_default_is_used_when_the_variable_is_unset():
    text = TUTORIAL.replace("bucket: bob-embulk-demo", "bucket: '{{ env.NOPE | default: \"fallback\" }}'")
    assert parse(text).input.bucket == "fallback"


def test_an_unknown_key_is_reported_with_its_path():
    error = error_of(TUTORIAL.replace("    skip_header_lines: 1", "    skip_header_line: 1"))
    assert error.path == "in.parser.skip_header_line"
    assert "unknown key" in str(error)


def test_a_bad_column_type_names_the_column_index():
    error = error_of(TUTORIAL.replace("{name: user_id, type: long}", "{name: user_id, type: integer}"))
    assert error.path == "in.parser.columns[1].type"
    assert "'integer' is not one of" in str(error)


def test_a_bad_mode_is_rejected_with_the_choices():
    error = error_of(TUTORIAL.replace("mode: insert_direct", "mode: upsert"))
    assert error.path == "out.mode"
    assert "merge" in str(error)


def test_a_url_may_replace_host_port_user_password_and_database():
    text = TUTORIAL.split("out:")[0] + "out:\n  type: hologres\n  url: postgresql://u:p@h:5432/db\n  table: s.t\n"
    cfg = parse(text)
    assert cfg.output.type == "hologres"
    assert (cfg.output.schema, cfg.output.table) == ("s", "t")
    assert "host=h" in cfg.output.conninfo and "password=p" in cfg.output.conninfo


def test_table_properties_only_for_hologres():
    text = TUTORIAL + "  table_properties: {orientation: column}\n"
    error = error_of(text)
    assert error.path == "out.table_properties"


def test_an_unknown_hologres_property_is_named():
    text = (TUTORIAL.replace("type: postgresql", "type: hologres")
            + "  table_properties: {orientation: column, colour: blue}\n")
    assert error_of(text).path == "out.table_properties.colour"


def test_run_needs_a_parser_but_guess_does_not():
    seed = TUTORIAL.split("  parser:")[0] + "out:" + TUTORIAL.split("out:")[1]
    assert error_of(seed).path == "in.parser"
    assert config.parse(config.load_yaml(seed), environ=ENV, require_parser=False).input.parser is None


def test_invalid_yaml_says_where():
    with pytest.raises(ConfigError, match="line 4"):
        config.load_yaml("in:\n  type: s3\n  bucket: [x\nout: {}\n")


def test_kinesis_input_with_filters(tmp_path: Path):
    path = tmp_path / "sensor_data.yml"
    path.write_text("""
in:
  type: kinesis
  stream: test-streaming-data
  parser:
    type: json
    columns:
    - {name: sensorId, type: long}
    - {name: currentTemperature, type: long}
    - {name: status, type: string}
filters:
- {type: add_uuid, column: uuid}
- {type: drop_fields, fields: [$record_timestamp]}
out:
  type: redshift
  url: postgresql://u:p@h/dev
  table: sensor_schema.sensor_data
""")
    cfg = config.load(path, environ={})
    assert cfg.name == "sensor_data" and cfg.is_stream
    assert cfg.output.mode == "append"
    assert "port=5439" in cfg.output.conninfo
    assert cfg.input.starting_position == "trim_horizon"


def test_at_timestamp_needs_a_timestamp():
    text = """
in: {type: kinesis, stream: s, starting_position: at_timestamp, parser: {columns: [{name: a}]}}
out: {type: postgresql, url: 'postgresql://h/db', table: t}
"""
    assert error_of(text).path == "in.timestamp"


def test_the_shipped_book_order_config_is_valid():
    root = Path(__file__).resolve().parents[2]
    cfg = config.load(root / "pipelines" / "book_order.yml", environ={"HOLOGRES_URL": "postgresql://h/db"})
    assert cfg.output.qualified_table == "public.book_order"
    assert cfg.output.primary_key == ("order_id",)
    assert cfg.output.mode == "insert_direct"


def test_a_remote_warehouse_without_sslmode_gets_tls_by_default():
    assert "sslmode=require" in parse(TUTORIAL).output.conninfo


def test_a_local_warehouse_keeps_libpq_defaults():
    text = TUTORIAL.replace("host: '${HOLO_HOST}'", "host: 127.0.0.1")
    assert "sslmode" not in parse(text).output.conninfo


def test_exec_mode_and_incremental_are_part_of_the_language():
    text = TUTORIAL.replace("  bucket: bob-embulk-demo", "  bucket: bob-embulk-demo\n  incremental: false")
    cfg = parse(text + "exec: {mode: micro_batch}\n")
    assert cfg.exec.mode == "micro_batch" and cfg.input.incremental is False
    assert error_of(TUTORIAL + "exec: {mode: forever}\n").path == "exec.mode"
    # Continuous, for S3, follows the bucket's notifications: without a queue it would do nothing.
    refused = error_of(text + "exec: {mode: continuous}\n")
    assert refused.path == "exec.mode" and "in.notifications" in str(refused)
    notified = text.replace("  incremental: false", "  incremental: false\n  notifications: {queue: q}")
    assert parse(notified + "exec: {mode: continuous}\n").exec.mode == "continuous"


def test_the_mode_variable_is_held_to_the_rules_of_exec_mode(monkeypatch: pytest.MonkeyPatch):
    from pipeline.orchestration.pipelines import stream_mode_of, stream_mode_variable

    text = TUTORIAL.replace("  bucket: bob-embulk-demo", "  bucket: bob-embulk-demo\n  incremental: false")
    cfg = parse(text)
    variable = stream_mode_variable(cfg.name)
    assert stream_mode_of(cfg) == "micro_batch"
    for mode, said in (("forever", "'forever' (from $"), ("continuous", "in.notifications")):
        monkeypatch.setenv(variable, mode)
        with pytest.raises(ConfigError) as refused:
            stream_mode_of(cfg)
        assert refused.value.path == "exec.mode" and said in str(refused.value) and variable in str(refused.value)
    notified = parse(text.replace("  incremental: false", "  incremental: false\n  notifications: {queue: q}"))
    assert stream_mode_of(notified) == "continuous"


def test_unset_variables_and_sole_variable_read_references_as_interpolation_does():
    text = "url: '{{ env.A }}'\nb: '${B:-x}'\nc: '{{ env.C | default: \"y\" }}'\nd: ${D}\n"
    assert config.unset_variables(text, {"D": "1"}) == {"A"}
    assert config.sole_variable("{{ env.HOLOGRES_URL }}") == "HOLOGRES_URL"
    assert config.sole_variable("postgresql://${HOST}/db") is None


@pytest.mark.parametrize(("written", "seconds"), [("90", 90), (90, 90), ("90s", 90), ("15m", 900), ("2h", 7200),
                                                  ("1.5h", 5400), ("1d", 86400), (" 10 m ", 600)])
def test_expect_within_and_retry_wait_are_durations_in_seconds_or_with_a_unit(written, seconds):
    cfg = parse(TUTORIAL + f"exec: {{expect_within: {written!r}, retry_wait: {written!r}}}\n")
    assert cfg.exec.expect_within == seconds and cfg.exec.retry_wait == seconds


@pytest.mark.parametrize("written", ["soon", "15 minutes", "-5m", "true", "0.5"])
def test_a_duration_that_is_not_one_is_refused_with_examples(written):
    error = error_of(TUTORIAL + f"exec: {{expect_within: {written}}}\n")
    assert error.path == "exec.expect_within"
    assert "90s, 15m, 2h or 1d" in str(error) or "at least 1 seconds" in str(error)


def test_failed_loads_are_retried_five_times_from_a_minute_doubling_up_to_an_hour():
    default = parse(TUTORIAL).exec
    assert default.expect_within is None and default.retries == 5 and default.retry_wait == 60
    assert [default.wait_before_retry(n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    tuned = parse(TUTORIAL + "exec: {retries: 0, retry_wait: 2h}\n").exec
    assert tuned.retries == 0 and tuned.wait_before_retry(3) == 7200  # a first wait above the cap is kept
    assert error_of(TUTORIAL + "exec: {retries: -1}\n").path == "exec.retries"


def test_embulks_retry_keys_turn_on_connection_retries_with_embulks_defaults_for_the_rest():
    plain = parse(TUTORIAL)
    assert plain.output.retry_limit is None  # none given: only serialization conflicts are retried
    some = parse(TUTORIAL + "  retry_limit: 3\n")
    assert (some.output.retry_limit, some.output.retry_wait_ms, some.output.max_retry_wait_ms) == (3, 1000, 1_800_000)
    waited = parse(TUTORIAL + "  retry_wait: 250\n")
    assert (waited.output.retry_limit, waited.output.retry_wait_ms) == (12, 250)
    error = error_of(TUTORIAL + "  retry_wait: 5000\n  max_retry_wait: 100\n")
    assert error.path == "out.max_retry_wait"


def test_a_stream_refuses_the_retry_keys_it_could_not_honour():
    stream = TUTORIAL.replace("  type: s3\n  bucket: bob-embulk-demo\n  path_prefix: original-data/\n",
                              "  type: kinesis\n  stream: sensors\n")
    stream = stream.replace("    type: csv\n", "    type: json\n")
    error = error_of(stream.split("    charset")[0] + "    type: json\n    columns:\n    - {name: a, type: string}\n"
                     + "out:" + stream.split("out:")[1] + "  retry_wait: 10\n")
    assert error.path == "out.retry_wait"
    assert "a stream has none" in error.message


def test_a_config_error_names_the_line_of_the_bad_key(tmp_path):
    path = tmp_path / "orders.yml"
    path.write_text(TUTORIAL.replace("{name: user_id, type: long}", "{name: user_id, type: lng}"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ=ENV)
    line = TUTORIAL.splitlines().index("    - {name: user_id, type: long}") + 1
    assert caught.value.path == "in.parser.columns[1].type"
    assert str(caught.value).endswith(f"({path}, line {line})")
