"""Each Embulk key means what it means in Embulk, is warned about (a knob that only tunes Embulk), or is refused.

Specifications are Embulk's own: embulk-parser-csv CsvParserPlugin (QuoteCharacter/EscapeCharacter,
header_line in transaction), embulk-input-s3 S3FileInputPlugin (path, last_path, use_modified_time,
skip_glacier_objects), embulk-util-aws-credentials AwsCredentials (auth_method and its keys) and
embulk-output-jdbc (retry_limit, batch_size, options).
"""

from __future__ import annotations

import pytest

from pipeline import config
from pipeline.errors import ConfigError
from pipeline_tests.engine.test_config import ENV, TUTORIAL


def with_parser(lines: str, text: str = TUTORIAL) -> str:
    return text.replace("    escape: '\"'\n", lines)


def parse(text: str) -> config.PipelineConfig:
    return config.parse(config.load_yaml(text), name="book_order", environ=ENV)


def refusal(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return caught.value


def parser_of(text: str) -> config.CsvParserConfig:
    parser = parse(text).input.parser
    assert parser is not None
    return parser


# -- quote and escape (embulk-parser-csv TestCsvParserPlugin: testCsvTokenizerQuoteNull, ...EscapeNull) -----------

def test_quote_and_escape_null_disable_them_and_escape_defaults_to_a_backslash():
    assert parser_of(with_parser("    escape: null\n")).escape is None
    assert parser_of(with_parser("    escape: null\n").replace("    quote: '\"'\n", "    quote: null\n")).quote is None
    assert parser_of(with_parser("")).escape == "\\"  # Embulk's default


def test_an_empty_quote_is_the_default_quote_and_an_empty_escape_none_each_with_a_warning():
    quoted = parse(with_parser("    escape: ''\n").replace("    quote: '\"'\n", "    quote: ''\n"))
    assert quoted.input.parser.quote == '"' and quoted.input.parser.escape is None
    assert any("in.parser.quote: an empty quote is obsolete" in w for w in quoted.warnings)
    assert any("in.parser.escape: an empty escape is obsolete" in w for w in quoted.warnings)


def test_a_quote_of_two_characters_is_refused_as_embulk_refuses_it():
    error = refusal(with_parser("    escape: '\\\\\\\\'\n"))
    assert error.path == "in.parser.escape" and "accepts only 1 character" in str(error)


# -- header_line (CsvParserPlugin.transaction) ----------------------------------------------------------------------

def test_header_line_true_skips_one_line_and_refuses_skip_header_lines_beside_it():
    text = TUTORIAL.replace("    skip_header_lines: 1\n", "    header_line: true\n")
    assert parser_of(text).skip_header_lines == 1
    assert parser_of(text.replace("header_line: true", "header_line: false")).skip_header_lines == 0
    error = refusal(TUTORIAL.replace("    skip_header_lines: 1\n", "    skip_header_lines: 1\n    header_line: true\n"))
    assert error.path == "in.parser.header_line" and "invalid if skip_header_lines is set" in str(error)


# -- timestamps: default_timezone, default_date and the column's own ------------------------------------------------

def test_timestamp_columns_take_the_parsers_zone_and_date_unless_they_name_their_own():
    text = TUTORIAL.replace("    columns:\n", "    default_timezone: Asia/Tokyo\n    default_date: '2024-02-29'\n"
                                             "    columns:\n    - {name: at, type: timestamp}\n"
                                             "    - {name: utc, type: timestamp, timezone: UTC, date: '2000-01-01'}\n")
    at, utc = parser_of(text).columns[:2]
    assert (at.timezone, at.date) == ("Asia/Tokyo", "2024-02-29")
    assert (utc.timezone, utc.date) == ("UTC", "2000-01-01")


@pytest.mark.parametrize(("column", "path", "why"), [
    ("{name: at, type: timestamp, timezone: Mars/Olympus}", "in.parser.columns[0].timezone", "unknown time zone"),
    ("{name: n, type: long, timezone: UTC}", "in.parser.columns[0].timezone", "only timestamp columns"),
    ("{name: at, type: timestamp, date: 2024/01/01}", "in.parser.columns[0].date", "YYYY-MM-DD"),
])
def test_a_zone_or_date_that_cannot_be_used_is_refused(column, path, why):
    error = refusal(TUTORIAL.replace("    columns:\n", f"    columns:\n    - {column}\n"))
    assert error.path == path and why in str(error)


# -- S3 input: path, last_path, use_modified_time, skip_glacier_objects, path_style_access --------------------------

def test_path_names_one_object_and_wins_over_path_prefix():
    source = parse(TUTORIAL.replace("  path_prefix: original-data/\n", "  path: original-data/a.csv\n")).input
    assert source.path == source.path_prefix == "original-data/a.csv"
    assert source.wanted("original-data/a.csv", NOW) and not source.wanted("original-data/a.csv.bak", NOW)


def test_neither_path_nor_path_prefix_is_refused_as_in_embulk():
    error = refusal(TUTORIAL.replace("  path_prefix: original-data/\n", ""))
    assert error.path == "in.path_prefix" and "or path" in str(error)


def test_last_path_is_an_exclusive_lower_bound():
    source = parse(TUTORIAL.replace("  path_prefix: original-data/\n",
                                    "  path_prefix: original-data/\n  last_path: original-data/b.csv\n")).input
    assert source.last_path == "original-data/b.csv"
    assert [key for key in ("original-data/a.csv", "original-data/b.csv", "original-data/c.csv")
            if source.wanted(key, NOW)] == ["original-data/c.csv"]


def test_use_modified_time_lists_from_last_modified_time_and_leaves_last_path_aside():
    text = TUTORIAL.replace("  path_prefix: original-data/\n",
                            "  path_prefix: original-data/\n  use_modified_time: true\n"
                            "  last_modified_time: '2024-01-31T23:59:59.000Z'\n  last_path: original-data/z.csv\n")
    parsed = parse(text)
    assert parsed.input.last_path is None and any("last_path: is not used" in w for w in parsed.warnings)
    from datetime import UTC, datetime

    assert not parsed.input.wanted("original-data/a.csv", datetime(2024, 1, 31, 23, 59, 58, tzinfo=UTC))
    assert parsed.input.wanted("original-data/a.csv", datetime(2024, 2, 1, tzinfo=UTC))
    error = refusal(TUTORIAL.replace("  path_prefix: original-data/\n", "  path_prefix: original-data/\n"
                                     "  last_modified_time: '2024-01-31T23:59:59.000Z'\n"))
    assert error.path == "in.last_modified_time"


def test_skip_glacier_objects_and_path_style_access_are_read():
    text = TUTORIAL.replace("  path_prefix: original-data/\n",
                            "  path_prefix: original-data/\n  skip_glacier_objects: true\n  path_style_access: true\n")
    parsed = parse(text).input
    assert parsed.skip_glacier_objects and parsed.aws.path_style_access


# -- auth_method (embulk-util-aws-credentials AwsCredentials) --------------------------------------------------------

def auth(lines: str) -> config.AwsSettings:
    return parse(TUTORIAL.replace("  access_key_id: '{{ env.AWS_ACCESS_KEY_ID }}'\n"
                                  "  secret_access_key: '{{ env.AWS_SECRET_ACCESS_KEY }}'\n", lines)).input.aws


def test_each_auth_method_takes_its_own_keys():
    assert auth("  auth_method: profile\n").profile_name == "default"
    assert auth("  auth_method: profile\n  profile_name: etl\n").profile_name == "etl"
    role = auth("  auth_method: assume_role\n  account_id: '123456789012'\n  role_name: loader\n"
                "  external_id: x\n  session_name: nightly\n")
    assert role.role_arn == "arn:aws:iam::123456789012:role/loader" and role.session_name == "nightly"
    assert auth("  auth_method: env\n").auth_method == "env"


@pytest.mark.parametrize(("lines", "path"), [
    ("  auth_method: env\n  profile_name: etl\n", "in.profile_name"),
    ("  auth_method: profile\n  access_key_id: AKID\n", "in.access_key_id"),
    ("  auth_method: assume_role\n  account_id: '1'\n", "in.role_name"),
    ("  auth_method: session\n  access_key_id: a\n  secret_access_key: b\n", "in.session_token"),
])
def test_a_key_of_another_auth_method_or_a_missing_one_is_refused(lines, path):
    with pytest.raises(ConfigError) as caught:
        auth(lines)
    assert caught.value.path == path


def test_basic_without_keys_is_anonymous_as_in_embulk_with_a_warning():
    parsed = parse(TUTORIAL.replace("  access_key_id: '{{ env.AWS_ACCESS_KEY_ID }}'\n"
                                    "  secret_access_key: '{{ env.AWS_SECRET_ACCESS_KEY }}'\n",
                                    "  auth_method: basic\n"))
    assert parsed.input.aws.auth_method == "anonymous"
    assert any("requests are anonymous" in w for w in parsed.warnings)


# -- exec and out: Embulk tuning knobs are warned about; the rest does something or is refused ---------------------

def test_embulk_tuning_knobs_are_named_in_a_warning_saying_what_happens_instead():
    text = (TUTORIAL.replace("out:\n", "exec: {min_output_tasks: 8, type: local}\nout:\n")
            + "  batch_size: 1000\n  retry_limit: 3\n  retry_wait: 100\n  max_retry_wait: 1000\n")
    parsed = parse(text)
    assert any(w.startswith("config out.batch_size: has no effect here: ") for w in parsed.warnings)
    # min_output_tasks deals an object's pages to that many COPY writers (engine/test_scatter.py).
    assert parsed.exec.min_output_tasks == 8 and not any("min_output_tasks" in w for w in parsed.warnings)
    # Embulk's retry keys take effect: lost connections are retried with their backoff (test_batch_faults).
    assert not any("retry" in w for w in parsed.warnings)
    assert (parsed.output.retry_limit, parsed.output.retry_wait_ms, parsed.output.max_retry_wait_ms) == (3, 100, 1000)


def test_jdbc_options_with_a_libpq_meaning_reach_the_connection_and_others_are_refused():
    conninfo = parse(TUTORIAL + "  options: {loginTimeout: 20, tcpKeepAlive: true, ApplicationName: nightly}\n"
                     ).output.conninfo
    assert "connect_timeout=20" in conninfo and "keepalives=1" in conninfo and "application_name=nightly" in conninfo
    error = refusal(TUTORIAL + "  options: {prepareThreshold: 0}\n")
    assert error.path == "out.options.prepareThreshold" and "no libpq equivalent" in str(error)


@pytest.mark.parametrize(("option", "path"), [
    ("{type: text, value_type: string}", "out.column_options.order_id.value_type"),
    ("{type: text, timestamp_format: '%Y'}", "out.column_options.order_id.timestamp_format"),
    ("{type: timestamp, timezone: Asia/Tokyo}", "out.column_options.order_id.timezone"),
])
def test_column_options_the_server_cannot_honour_are_refused(option, path):
    assert refusal(TUTORIAL + f"  column_options:\n    order_id: {option}\n").path == path


def test_an_executor_other_than_local_is_refused():
    assert refusal(TUTORIAL.replace("out:\n", "exec: {type: remote}\nout:\n")).path == "exec.type"


from datetime import UTC, datetime  # noqa: E402

NOW = datetime(2024, 6, 1, tzinfo=UTC)


# -- .yml.liquid: rendered as Embulk renders it, before YAML ----------------------------------------------------

LIQUID = """in:
  type: s3
  bucket: {{ env.BUCKET }}
  path_prefix: {{ env.PREFIX | default: 'original-data/' }}
  endpoint: {{ env.AWS_ENDPOINT_URL }}
{% include 'parsers/csv' %}
{% if env.TARGET == 'hologres' %}out: {type: hologres, url: '{{ env.HOLOGRES_URL }}', table: book_order}
{% else %}out: {type: postgresql, url: 'postgresql://u@db.example.com/x', table: book_order}
{% endif %}"""

PARTIAL = """  parser:
    type: csv
    quote: "'"
    columns:
    - {name: order_id, type: string}
"""


def write_liquid(tmp_path, text: str = LIQUID):
    (tmp_path / "parsers").mkdir(exist_ok=True)
    (tmp_path / "parsers" / "_csv.yml.liquid").write_text(PARTIAL)
    path = tmp_path / "book_order.yml.liquid"
    path.write_text(text)
    return path


def test_a_liquid_config_with_unquoted_tags_includes_and_conditions_is_rendered_then_read(tmp_path):
    path = write_liquid(tmp_path)
    environ = {"BUCKET": "books", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "TARGET": "hologres",
               "HOLOGRES_URL": "postgresql://u:p@127.0.0.1:5432/h"}
    loaded = config.load(path, environ=environ)
    assert loaded.name == "book_order"
    assert (loaded.input.bucket, loaded.input.path_prefix, loaded.input.aws.endpoint) == (
        "books", "original-data/", "http://127.0.0.1:9000")
    assert loaded.input.parser.quote == "'" and loaded.output.type == "hologres"
    assert config.load(path, environ={**environ, "TARGET": "other"}).output.type == "postgresql"


def test_an_unset_liquid_variable_is_named_instead_of_rendering_empty(tmp_path):
    with pytest.raises(ConfigError, match="BUCKET"):
        config.load(write_liquid(tmp_path), environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})


def test_a_missing_partial_is_named(tmp_path):
    path = write_liquid(tmp_path, LIQUID.replace("parsers/csv", "parsers/tsv"))
    with pytest.raises(ConfigError, match=r"parsers/_tsv\.yml\.liquid"):
        config.load(path, environ={"BUCKET": "b", "AWS_ENDPOINT_URL": "http://x:1"})


def test_a_plain_yml_file_is_not_rendered(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text(TUTORIAL.replace("original-data/", "'{% raw %}x{% endraw %}/'"))
    assert config.load(path, environ=ENV).input.path_prefix == "{% raw %}x{% endraw %}/"
