"""No config key is read and dropped: each one the language reads changes the config, warns, or is refused.

The keys are found by watching the parser read two full configs (the shipped ones), so a key added to
the language without an entry here fails this test; each entry sets the key to a value other than
its default and proves the effect: a different parsed config (what the engines act on; the engine
tests show what each field does), a warning naming the key, or a refusal naming it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from pipeline import config
from pipeline.errors import ConfigError
from pipeline.orchestration.factory import DEFAULT_CONFIG_DIR

ENV = {"HOLOGRES_URL": "postgresql://u:p@127.0.0.1:5432/h", "REDSHIFT_URL": "postgresql://u:p@127.0.0.1:5439/r",
       "PIPELINE_BUCKET": "b", "PIPELINE_STREAM": "s", "PIPELINE_KMS_KEY": "alias/k", "REDSHIFT_IAM_ROLE": "arn:r"}
ROLE = {"in.auth_method": "assume_role", "in.account_id": "123456789012", "in.role_name": "loader"}
MODIFIED = {"in.use_modified_time": True}
TS = {"in.parser.columns": [{"name": "order_id", "type": "string"}, {"name": "at", "type": "timestamp"}]}

# key -> (which shipped config, the keys to set). S3 keys change book_order, stream keys sensor_data.
S3: dict[str, dict[str, Any]] = {
    "name": {"name": "renamed"},
    "in": {"in": {"type": "s3", "bucket": "other", "path_prefix": ""}},
    "in.type": {"in.type": "ftp"},
    "in.bucket": {"in.bucket": "other"},
    "in.path_prefix": {"in.path_prefix": "x/"},
    "in.path": {"in.path": "x/a.csv"},
    "in.path_match_pattern": {"in.path_match_pattern": "x"},
    "in.total_file_count_limit": {"in.total_file_count_limit": 3},
    "in.incremental": {"in.incremental": False},
    "in.last_path": {"in.last_path": "x/a.csv"},
    "in.use_modified_time": MODIFIED,
    "in.last_modified_time": {**MODIFIED, "in.last_modified_time": "2024-01-31T23:59:59.000Z"},
    "in.skip_glacier_objects": {"in.skip_glacier_objects": True},
    "in.notifications": {"in.notifications": {"queue": "book-events"}},
    "in.notifications.queue": {"in.notifications.queue": "https://sqs.ap-northeast-1.amazonaws.com/1/q"},
    "in.notifications.sweep_interval": {"in.notifications": {"queue": "q", "sweep_interval": "1m"}},
    "in.decoders": {"in.decoders": [{"type": "zip"}]},
    "in.endpoint": {"in.endpoint": "http://127.0.0.1:1"},
    "in.region": {"in.region": "ap-northeast-1"},
    "in.access_key_id": {"in.access_key_id": "AKID", "in.secret_access_key": "s"},
    "in.secret_access_key": {"in.secret_access_key": "s"},
    "in.session_token": {"in.auth_method": "session", "in.access_key_id": "a", "in.secret_access_key": "b",
                         "in.session_token": "t"},
    "in.auth_method": {"in.auth_method": "anonymous"},
    "in.profile_name": {"in.auth_method": "profile", "in.profile_name": "etl"},
    "in.profile_file": {"in.auth_method": "profile", "in.profile_file": "/tmp/credentials"},
    "in.account_id": ROLE,
    "in.role_name": ROLE,
    "in.arn_partition": {**ROLE, "in.arn_partition": "aws-cn"},
    "in.external_id": {**ROLE, "in.external_id": "x"},
    "in.duration_in_seconds": {**ROLE, "in.duration_in_seconds": 1800},
    "in.session_name": {**ROLE, "in.session_name": "nightly"},
    "in.path_style_access": {"in.path_style_access": True},
    "in.maximum_retries": {"in.maximum_retries": 2},
    "in.allow_insecure": {"in.allow_insecure": True},
    "in.min_task_size": {"in.min_task_size": 1000},
    "in.initial_retry_interval_millis": {"in.initial_retry_interval_millis": 10},
    "in.maximum_retry_interval_millis": {"in.maximum_retry_interval_millis": 10},
    "in.http_proxy": {"in.http_proxy": {"host": "proxy"}},
    "in.parser": {"in.parser": None},
    "in.parser.type": {"in.parser.type": "json"},
    "in.parser.charset": {"in.parser.charset": "MS932"},
    "in.parser.newline": {"in.parser.newline": "CRLF"},
    "in.parser.delimiter": {"in.parser.delimiter": "\t"},
    "in.parser.field_delimiter": {"in.parser.delimiter": None, "in.parser.field_delimiter": "\t"},
    "in.parser.quote": {"in.parser.quote": "'"},
    "in.parser.escape": {"in.parser.escape": "\\"},
    "in.parser.null_string": {"in.parser.null_string": "NULL"},
    "in.parser.skip_header_lines": {"in.parser.skip_header_lines": 2},
    "in.parser.header_line": {"in.parser.skip_header_lines": None, "in.parser.header_line": False},
    "in.parser.trim_if_not_quoted": {"in.parser.trim_if_not_quoted": True},
    "in.parser.comment_line_marker": {"in.parser.comment_line_marker": "#"},
    "in.parser.allow_extra_columns": {"in.parser.allow_extra_columns": True},
    "in.parser.allow_optional_columns": {"in.parser.allow_optional_columns": True},
    "in.parser.max_quoted_size_limit": {"in.parser.max_quoted_size_limit": 10},
    "in.parser.stop_on_invalid_record": {"in.parser.stop_on_invalid_record": True},
    "in.parser.quotes_in_quoted_fields": {
        "in.parser.quotes_in_quoted_fields": "ACCEPT_STRAY_QUOTES_ASSUMING_NO_DELIMITERS_IN_FIELDS"},
    "in.parser.line_delimiter_recognized": {"in.parser.line_delimiter_recognized": "LF"},
    "in.parser.default_timezone": {**TS, "in.parser.default_timezone": "Asia/Tokyo"},
    "in.parser.default_date": {**TS, "in.parser.default_date": "2024-01-01"},
    "in.parser.default_timestamp_format": {**TS, "in.parser.default_timestamp_format": "%Y/%m/%d"},
    "in.parser.columns": {"in.parser.columns": [{"name": "order_id", "type": "string"}]},
    "in.parser.columns[].name": {"in.parser.columns": [{"name": "renamed", "type": "string"}]},
    "in.parser.columns[].type": {"in.parser.columns": [{"name": "order_id", "type": "long"}]},
    "in.parser.columns[].format": {"in.parser.columns": [{"name": "at", "type": "timestamp", "format": "%Y"}]},
    "in.parser.columns[].timezone": {"in.parser.columns": [{"name": "at", "type": "timestamp", "timezone": "JST"}]},
    "in.parser.columns[].date": {"in.parser.columns": [{"name": "at", "type": "timestamp", "date": "2000-01-01"}]},
    "filters": {"filters": [{"type": "add_uuid", "column": "u"}]},
    "exec": {"exec": {"max_threads": 1}},
    "exec.type": {"exec.type": "remote"},
    "exec.mode": {"exec.mode": "continuous"},
    "exec.max_threads": {"exec.max_threads": 1},
    "exec.window_seconds": {"exec.window_seconds": 5},
    "exec.max_records": {"exec.max_records": 10},
    "exec.max_bytes": {"exec.max_bytes": 4096},
    "exec.max_runtime": {"exec.max_runtime": 60},
    "exec.expect_within": {"exec.expect_within": "1h"},
    "exec.retries": {"exec.retries": 1},
    "exec.retry_wait": {"exec.retry_wait": "5m"},
    "exec.min_output_tasks": {"exec.min_output_tasks": 8},
    "exec.guess_plugins": {"exec.guess_plugins": ["csv_all_strings"]},
    "out": {"out.type": "postgresql"},
    "out.type": {"out.type": "postgresql", "out.table_properties": None},
    "out.url": {"out.url": "postgresql://v:w@127.0.0.1:5432/other"},
    "out.host": {"out.url": None, "out.host": "127.0.0.1", "out.database": "d"},
    "out.port": {"out.port": 6543},
    "out.user": {"out.user": "someone"},
    "out.password": {"out.password": "pw"},
    "out.database": {"out.database": "other"},
    "out.sslmode": {"out.sslmode": "verify-full"},
    "out.ssl": {"out.ssl": "verify"},
    "out.connect_timeout": {"out.connect_timeout": 3},
    "out.options": {"out.options": {"loginTimeout": 5}},
    "out.schema": {"out.table": "book_order", "out.schema": "other"},
    "out.table": {"out.table": "public.other"},
    "out.mode": {"out.mode": "merge"},
    "out.merge_keys": {"out.merge_keys": ["order_id"]},
    "out.primary_key": {"out.primary_key": ["user_id"]},
    "out.create_table": {"out.create_table": False},
    "out.column_options": {"out.column_options": {"order_id": {"type": "varchar(20)"}}},
    "out.column_options.*.type": {"out.column_options": {"order_id": {"type": "varchar(20)"}}},
    "out.column_options.*.value_type": {"out.column_options": {"order_id": {"type": "text", "value_type": "string"}}},
    "out.column_options.*.timestamp_format": {"out.column_options": {"order_id": {"type": "text",
                                                                                  "timestamp_format": "%Y"}}},
    "out.column_options.*.timezone": {"out.column_options": {"order_id": {"type": "text", "timezone": "JST"}}},
    "out.table_properties": {"out.table_properties": {"orientation": "row"}},
    "out.rejected_table": {"out.rejected_table": "bad_rows"},
    "out.state_schema": {"out.state_schema": "pipeline_state"},
    "out.allow_insecure": {"out.allow_insecure": True},
    "out.truncate_columns": {"out.truncate_columns": True},
    "out.default_timezone": {"out.default_timezone": "Asia/Tokyo"},
    "out.distkey": {"out.distkey": "user_id"},
    "out.sortkey": {"out.sortkey": ["user_id"]},
    "out.iam_role": {"out.iam_role": "arn:aws:iam::1:role/r"},
    "out.s3_staging": {"out.s3_staging": {"bucket": "stage"}},
    "out.batch_size": {"out.batch_size": 100},
    "out.retry_limit": {"out.retry_limit": 1},
    "out.retry_wait": {"out.retry_wait": 1},
    "out.max_retry_wait": {"out.max_retry_wait": 5000},
    "out.socket_timeout": {"out.socket_timeout": 1},
    "out.merge_rule": {"out.merge_rule": ["a = b"]},
    "out.before_load": {"out.before_load": "DELETE FROM t"},
    "out.after_load": {"out.after_load": "VACUUM"},
    "out.create_table_constraint": {"out.create_table_constraint": "x"},
    "out.create_table_option": {"out.create_table_option": "x"},
    "out.role": {"out.role": "loader"},
    "out.transaction_isolation": {"out.transaction_isolation": "serializable"},
    "out.temp_schema": {"out.temp_schema": "tmp"},
    "out.ssl_mode": {"out.ssl_mode": "require"},
}
STREAM: dict[str, dict[str, Any]] = {
    "in.stream": {"in.stream": "other"},
    "in.starting_position": {"in.starting_position": "latest"},
    "in.timestamp": {"in.starting_position": "at_timestamp", "in.timestamp": "2024-01-01T00:00:00Z"},
    "in.on_data_loss": {"in.on_data_loss": "warn"},
    "in.on_stream_recreated": {"in.on_stream_recreated": "restart"},
    "in.parser.max_record_bytes": {"in.parser.max_record_bytes": 100},
    "out.s3_staging.bucket": {"out.s3_staging.bucket": "stage"},
    "out.s3_staging.prefix": {"out.s3_staging.prefix": "p/"},
    "out.s3_staging.sse_kms_key_id": {"out.s3_staging.sse_kms_key_id": "alias/other"},
    "out.s3_staging.format": {"out.s3_staging.format": "csv"},
}
SHIPPED = {"book_order": S3, "sensor_data": STREAM}


def document(name: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((DEFAULT_CONFIG_DIR / f"{name}.yml").read_text(encoding="utf-8"))


def changed(base: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for dotted, value in settings.items():
        *parents, key = dotted.split(".")
        node = result
        for parent in parents:
            if node.get(parent) is None:
                node[parent] = {}
            node = node[parent]
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    return result


def parse(raw: dict[str, Any], name: str) -> config.PipelineConfig:
    return config.parse(raw, name=name, environ=ENV)


def keys_the_parser_reads(monkeypatch) -> set[str]:
    seen: set[str] = set()

    def normal(path: str) -> str:
        return re.sub(r"^out\.column_options\.[^.]+\.", "out.column_options.*.", re.sub(r"\[\d+\]", "[]", path))

    for method in ("get", "has", "given_null"):
        original = getattr(config._Section, method)

        def watched(self, key, *args, _original=original, **kwargs):
            seen.add(normal(self.at(key)))
            return _original(self, key, *args, **kwargs)

        monkeypatch.setattr(config._Section, method, watched)
    original_done = config._Section.done

    def done(self, *, no_effect=None, refused=None):
        seen.update(normal(self.at(key)) for key in [*(no_effect or {}), *(refused or {})])
        return original_done(self, no_effect=no_effect, refused=refused)

    monkeypatch.setattr(config._Section, "done", done)
    for name in SHIPPED:
        parse(document(name), name)
    return seen


def test_every_key_the_language_reads_has_an_entry_here(monkeypatch):
    read = keys_the_parser_reads(monkeypatch)
    listed = set(S3) | set(STREAM)
    assert sorted(read - listed) == [], "keys read with no effect test: add them to S3 or STREAM"


@pytest.mark.parametrize(("name", "key"), [(name, key) for name, keys in SHIPPED.items() for key in keys])
def test_each_key_changes_the_config_warns_or_is_refused(name, key):
    base = document(name)
    settings = SHIPPED[name][key]
    before = parse(base, name)
    try:
        after = parse(changed(base, settings), name)
    except ConfigError as error:
        assert error.path.startswith(key.split("[")[0].replace(".*", "")) or error.path in settings or any(
            error.path.startswith(k) for k in settings), (key, error.path, str(error))
        return
    if any(f"config {key}" in w or f"config {k}" in w for w in after.warnings for k in settings):
        return
    assert after != before, f"{key} was read and had no effect"
