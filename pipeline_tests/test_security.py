"""Security: TLS for every remote hop, least-privilege policies, and no secret in any output.

The transport and policy tests need no stack. The leak tests run both pipelines on the local
stack with distinctive secrets (a PostgreSQL role's password, AWS keys) through ``pipeline run``
and through Dagster, then search everything a user or an operator can see for those values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline import config
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

S3_CONFIG = """
in:
  type: s3
  bucket: bob-embulk-demo
  path_prefix: original-data/
  {endpoint}
  parser:
    type: csv
    columns:
    - {{name: order_id, type: string}}
out:
  type: hologres
  {out}
  table: public.book_order
"""

LOCAL_OUT = "url: postgresql://u:p@127.0.0.1:5432/db"


def parse(endpoint: str = "", out: str = LOCAL_OUT, environ: dict[str, str] | None = None) -> config.PipelineConfig:
    text = S3_CONFIG.format(endpoint=endpoint, out=out.replace("\n", "\n  "))
    return config.parse(config.load_yaml(text), name="book_order", environ=environ or {})


def error_of(endpoint: str = "", out: str = LOCAL_OUT, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(endpoint, out, environ)
    return caught.value


# --------------------------------------------------------------------------- AWS endpoints


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:5000", "http://127.9.8.7", "http://localhost:4566",
                                      "http://[::1]:5000", "https://s3.example.com", "https://10.0.0.5:9000"])
def test_https_or_loopback_aws_endpoints_are_accepted(endpoint: str):
    assert parse(f"endpoint: '{endpoint}'").input.aws.endpoint == endpoint


@pytest.mark.parametrize("endpoint", ["http://minio.internal:9000", "http://10.0.0.5:9000", "http://[2001:db8::1]"])
def test_a_plain_http_endpoint_off_the_machine_is_refused_with_the_fix(endpoint: str):
    error = error_of(f"endpoint: '{endpoint}'")
    assert error.path == "in.endpoint"
    assert "https://" in error.message and "in.allow_insecure: true" in error.message


def test_allow_insecure_accepts_a_plain_http_endpoint_on_purpose():
    cfg = parse("endpoint: 'http://minio.internal:9000'\n  allow_insecure: true")
    assert cfg.input.aws.allow_insecure


def test_the_endpoint_error_never_shows_credentials_written_into_the_url():
    error = error_of("endpoint: 'http://AKIDLEAK:s3cr3t-in-url@minio.internal:9000'")
    assert "s3cr3t-in-url" not in str(error) and "AKIDLEAK" not in str(error)


def test_aws_endpoint_url_from_the_environment_is_checked_when_the_config_names_none():
    error = error_of(environ={"AWS_ENDPOINT_URL": "http://moto.internal:5000"})
    assert error.path.startswith("in.endpoint") and "AWS_ENDPOINT_URL" in error.message


def test_the_service_specific_endpoint_variable_is_checked_too():
    error = error_of(environ={"AWS_ENDPOINT_URL": "https://ok.example.com", "AWS_ENDPOINT_URL_S3": "http://s3.lan"})
    assert "AWS_ENDPOINT_URL_S3" in error.message


def test_the_environment_endpoint_is_ignored_when_the_config_names_its_own():
    cfg = parse("endpoint: 'https://s3.example.com'", environ={"AWS_ENDPOINT_URL": "http://moto.internal:5000"})
    assert cfg.input.aws.endpoint == "https://s3.example.com"


# --------------------------------------------------------------------------- warehouse TLS


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_a_remote_warehouse_with_sslmode_require_or_stronger_is_accepted(sslmode: str):
    assert f"sslmode={sslmode}" in parse(out=f"url: postgresql://u:p@holo.example.com/db?sslmode={sslmode}"
                                         ).output.conninfo


def test_a_remote_warehouse_with_no_sslmode_gets_require_so_embulk_configs_work_as_written():
    assert "sslmode=require" in parse(out="url: postgresql://u:p@holo.example.com:80/db").output.conninfo
    embulk = parse(out="host: holo.example.com\nport: 80\nuser: bob\npassword: pw\ndatabase: demo")
    assert "sslmode=require" in embulk.output.conninfo


@pytest.mark.parametrize("query", ["?sslmode=disable", "?sslmode=allow", "?sslmode=prefer"])
def test_a_remote_warehouse_with_a_weak_sslmode_is_refused(query: str):
    error = error_of(out=f"url: postgresql://u:s3cr3t-pw@holo.example.com:80/db{query}")
    assert error.path == "out.url"
    assert "sslmode=require" in error.message and "out.allow_insecure: true" in error.message
    assert "s3cr3t-pw" not in str(error)


def test_a_weak_out_sslmode_key_is_named():
    error = error_of(out="host: 192.0.2.10\nuser: bob\ndatabase: demo\nsslmode: prefer")
    assert error.path == "out.sslmode" and "sslmode=prefer" in error.message


def test_embulk_host_with_sslmode_require_is_accepted():
    assert "sslmode=require" in parse(out="host: holo.example.com\ndatabase: demo\nsslmode: require").output.conninfo


@pytest.mark.parametrize("url", ["postgresql://u:p@127.0.0.1/db", "postgresql://u:p@localhost/db",
                                 "postgresql://u:p@[::1]/db", "postgresql:///db?host=/var/run/postgresql"])
def test_a_loopback_or_socket_warehouse_needs_no_tls(url: str):
    assert parse(out=f"url: '{url}'").output.conninfo


def test_out_allow_insecure_accepts_a_plaintext_remote_warehouse_on_purpose():
    assert parse(out="url: postgresql://u:p@holo.example.com/db\nallow_insecure: true").output.allow_insecure


def test_pgsslmode_in_the_environment_counts_as_libpq_would_use_it():
    assert parse(out="url: postgresql://u:p@holo.example.com/db", environ={"PGSSLMODE": "verify-full"})
    error = error_of(out="url: postgresql://u:p@holo.example.com/db", environ={"PGSSLMODE": "prefer"})
    assert "sslmode=prefer" in error.message


def test_a_multi_host_url_is_refused_when_any_host_is_remote_and_tls_is_weak():
    error = error_of(out="url: 'postgresql://u:p@127.0.0.1:5432,replica.example.com:5432/db?sslmode=prefer'")
    assert "replica.example.com" in error.message


def test_each_side_opts_out_separately():
    # in.allow_insecure does not relax the warehouse, and out.allow_insecure does not relax AWS.
    error = error_of("endpoint: 'http://minio.lan'\n  allow_insecure: true",
                     "url: postgresql://u:p@holo.lan/db?sslmode=disable")
    assert error.path == "out.url"
    error = error_of("endpoint: 'http://minio.lan'", "url: postgresql://u:p@holo.lan/db\nallow_insecure: true")
    assert error.path == "in.endpoint"


def test_the_shipped_configs_pass_on_the_local_stack_environment():
    environ = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "HOLOGRES_URL": "postgresql://p:p@127.0.0.1:5432/h",
               "REDSHIFT_URL": "postgresql://p:p@127.0.0.1:5432/r"}
    for name in ("book_order", "sensor_data"):
        assert config.load(ROOT / "pipelines" / f"{name}.yml", environ=environ).name == name


def test_the_shipped_configs_refuse_a_real_warehouse_url_with_tls_turned_off():
    environ = {"HOLOGRES_URL": "postgresql://u:p@hgpostcn-cn-x.hologres.aliyuncs.com:80/db?sslmode=disable"}
    with pytest.raises(ConfigError, match="sslmode"):
        config.load(ROOT / "pipelines" / "book_order.yml", environ=environ)


# --------------------------------------------------------------------------- pipeline policy


def policy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``pipeline policy ...`` as a user runs it, with the command registered as the CLI will."""
    code = ("import sys; from pipeline import cli; "
            "cli.COMMANDS.setdefault('policy', ('pipeline.commands.policy', 'print AWS policies')); "
            "raise SystemExit(cli.main(sys.argv[1:]))")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HOLOGRES", "REDSHIFT", "PIPELINE_"))}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-c", code, "policy", *args], capture_output=True, text=True,
                          env=environ, cwd=ROOT, timeout=60)


def statements(output: str) -> dict[str, dict[str, Any]]:
    document = json.loads(output)
    assert document["Version"] == "2012-10-17"
    return {s["Sid"]: s for s in document["Statement"]}


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "orders.yml"
    path.write_text(text)
    return str(path)


def test_iam_policy_for_s3_reads_only_the_prefix_and_decrypts_only_through_s3(tmp_path: Path):
    path = write_config(tmp_path, S3_CONFIG.format(endpoint="", out="url: '{{ env.HOLOGRES_URL }}'"))
    key = "arn:aws:kms:ap-northeast-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    # HOLOGRES_URL is unset: a policy never needs the warehouse's secret.
    done = policy("iam", path, "--kms-key", key, "--region", "ap-northeast-1", "--account", "123456789012")
    assert done.returncode == 0, done.stderr
    found = statements(done.stdout)
    assert found["ListSourcePrefix"]["Action"] == ["s3:ListBucket"]
    assert found["ListSourcePrefix"]["Resource"] == "arn:aws:s3:::bob-embulk-demo"
    assert found["ListSourcePrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["original-data/*"]}}
    assert "s3:GetObject" in found["ReadSourceObjects"]["Action"]
    assert found["ReadSourceObjects"]["Resource"] == "arn:aws:s3:::bob-embulk-demo/original-data/*"
    assert found["DecryptSourceObjects"]["Action"] == ["kms:Decrypt"]
    assert found["DecryptSourceObjects"]["Resource"] == key
    assert found["DecryptSourceObjects"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.ap-northeast-1.amazonaws.com"}}
    every_action = {a for s in found.values() for a in s["Action"]}
    assert not {a for a in every_action if a.endswith("*")}
    assert not {"s3:PutObject", "s3:DeleteObject", "kinesis:GetRecords"} & every_action


def test_iam_policy_for_the_shipped_stream_reads_the_stream_and_writes_only_the_staging_prefix():
    done = policy("iam", "pipelines/sensor_data.yml", "--account", "123456789012",
                  env={"AWS_DEFAULT_REGION": "us-west-2"})
    assert done.returncode == 0, done.stderr
    found = statements(done.stdout)
    stream = found["ReadSourceStream"]
    assert set(stream["Action"]) == {"kinesis:DescribeStreamSummary", "kinesis:DescribeStream", "kinesis:ListShards",
                                     "kinesis:GetShardIterator", "kinesis:GetRecords"}
    assert stream["Resource"] == "arn:aws:kinesis:us-west-2:123456789012:stream/test-streaming-data"
    assert found["WriteRedshiftStaging"] == {"Sid": "WriteRedshiftStaging", "Effect": "Allow",
                                             "Action": ["s3:PutObject"],
                                             "Resource": "arn:aws:s3:::bob-embulk-demo/redshift-staging/*"}
    encrypt = found["EncryptRedshiftStaging"]
    assert encrypt["Action"] == ["kms:GenerateDataKey"]
    # The staging key is an alias: matched through kms:ResourceAliases, since IAM never matches alias ARNs.
    assert encrypt["Condition"]["ForAnyValue:StringEquals"] == {"kms:ResourceAliases": "alias/pipeline-demo"}
    assert encrypt["Condition"]["StringEquals"] == {"kms:ViaService": "s3.us-west-2.amazonaws.com"}
    assert "ListSourcePrefix" not in found and "ReadSourceObjects" not in found


def test_iam_policy_arns_default_to_wildcards_without_account_or_region():
    done = policy("iam", "pipelines/sensor_data.yml")
    assert done.returncode == 0, done.stderr
    assert statements(done.stdout)["ReadSourceStream"]["Resource"] == "arn:aws:kinesis:*:*:stream/test-streaming-data"


def test_iam_policy_of_a_bad_config_is_a_one_line_error():
    done = policy("iam", "no-such-config.yml")
    assert done.returncode == 1 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_bucket_policy_denies_outside_the_allowed_addresses_and_without_tls():
    done = policy("bucket", "bob-embulk-demo", "--allow-ip", "203.0.113.7", "--allow-ip", "198.51.100.0/24")
    assert done.returncode == 0, done.stderr
    found = statements(done.stdout)
    resources = ["arn:aws:s3:::bob-embulk-demo", "arn:aws:s3:::bob-embulk-demo/*"]
    outside = found["DenyOutsideAllowedSources"]
    assert (outside["Effect"], outside["Principal"], outside["Action"], outside["Resource"]) == (
        "Deny", "*", "s3:*", resources)
    assert outside["Condition"] == {"NotIpAddress": {"aws:SourceIp": ["203.0.113.7/32", "198.51.100.0/24"]}}
    plaintext = found["DenyWithoutTLS"]
    assert (plaintext["Effect"], plaintext["Resource"]) == ("Deny", resources)
    assert plaintext["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_bucket_policy_lets_a_vpc_endpoint_through_the_address_rule():
    done = policy("bucket", "b", "--allow-ip", "203.0.113.7", "--vpce", "vpce-0abc")
    condition = statements(done.stdout)["DenyOutsideAllowedSources"]["Condition"]
    assert condition["StringNotEquals"] == {"aws:SourceVpce": ["vpce-0abc"]}


def test_bucket_policy_needs_a_valid_address():
    assert policy("bucket", "b").returncode == 2
    done = policy("bucket", "b", "--allow-ip", "not-an-ip")
    assert done.returncode == 2 and "not an IP address" in done.stderr


# --------------------------------------------------------------------------- secret leaks

BOOK_HEADER = "order_id,user_id,book_id,book_name,order_cnt,order_amt\n"


class Leak:
    """Both shipped pipelines pointed at this test's prefix, stream and tables, run with known secrets."""

    def __init__(self, stack: Any, s3: Any, kinesis: Any, directory: Path):
        import psycopg
        import yaml
        from psycopg import sql

        from pipeline.generate import put_sensor_records

        tag = uuid.uuid4().hex[:10]
        self.password = f"S3cr3t-pw-{tag}-Zq"
        self.aws_key_id = f"AKIALEAK{tag.upper()}"
        self.aws_secret = f"LeakAwsSecret/{tag}+Xy"
        self.role = f"leaktest_{tag}"
        with psycopg.connect(stack.hologres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(self.role), sql.Literal(self.password)))
        address = f"127.0.0.1:{stack.standin_port}"
        self.hologres_url = f"postgresql://{self.role}:{self.password}@{address}/hologres"
        self.redshift_url = f"postgresql://{self.role}:{self.password}@{address}/redshift"

        self.bucket = stack.bucket
        self.prefix = f"leaktest/{tag}/"
        self.stream = f"leaktest-{tag}"
        self.good_key = f"{self.prefix}orders.csv"
        self.bad_key = f"{self.prefix}bad/orders.csv"
        s3.put_object(Bucket=self.bucket, Key=self.good_key,
                      Body=(BOOK_HEADER + "o1,1,6,book,1,100\no2,2,6,book,2,200\n").encode())
        kinesis.create_stream(StreamName=self.stream, ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(StreamName=self.stream)
        assert put_sensor_records(kinesis, self.stream, 20, seed=1) == 20

        self.directory = directory
        shipped = ROOT / "pipelines"
        book = yaml.safe_load((shipped / "book_order.yml").read_text(encoding="utf-8"))
        book["in"]["path_prefix"] = self.prefix
        book["in"]["path_match_pattern"] = r"^[^/]+/[^/]+/orders\.csv$"
        book["out"]["table"] = f"public.leak_{tag}"
        sensor = yaml.safe_load((shipped / "sensor_data.yml").read_text(encoding="utf-8"))
        sensor["out"]["table"] = f"sensor_schema.leak_{tag}"
        directory.mkdir(parents=True, exist_ok=True)
        self.book_order = directory / "book_order.yml"
        self.sensor_data = directory / "sensor_data.yml"
        self.book_order.write_text(yaml.safe_dump(book, sort_keys=False), encoding="utf-8")
        self.sensor_data.write_text(yaml.safe_dump(sensor, sort_keys=False), encoding="utf-8")
        # The same prefix, read with no pattern: reaches an object with a value that is not a number.
        book["in"]["path_match_pattern"] = r"bad/orders\.csv$"
        book["in"]["parser"]["stop_on_invalid_record"] = True  # the bad value stops the run, with its message
        self.bad_book_order = directory / "bad" / "book_order.yml"
        self.bad_book_order.parent.mkdir()
        self.bad_book_order.write_text(yaml.safe_dump(book, sort_keys=False), encoding="utf-8")
        s3.put_object(Bucket=self.bucket, Key=self.bad_key,
                      Body=(BOOK_HEADER + "o3,not-a-number,6,book,1,100\n").encode())

    def environ(self, **overrides: str) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.aws_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret,
            "HOLOGRES_URL": self.hologres_url,
            "REDSHIFT_URL": self.redshift_url,
            "PIPELINE_STREAM": self.stream,
            "PIPELINE_CONFIG_DIR": str(self.directory),
            **overrides,
        }

    def secrets(self) -> tuple[str, ...]:
        return (self.password, self.aws_secret, self.aws_key_id)

    def hits(self, text: str) -> list[str]:
        return [secret for secret in self.secrets() if secret in text]


@pytest.fixture
def leak(stack: Any, s3: Any, kinesis: Any, tmp_path: Path) -> Leak:
    return Leak(stack, s3, kinesis, tmp_path / "pipelines")


def pipeline_run(leak: Leak, config_path: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **leak.environ(**overrides)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "-v", "run", str(config_path)], capture_output=True,
                          text=True, env=environ, cwd=ROOT, timeout=300)


def test_pipeline_run_of_both_pipelines_prints_no_secret(leak: Leak):
    for config_path in (leak.book_order, leak.sensor_data):
        done = pipeline_run(leak, config_path)
        assert done.returncode == 0, done.stderr
        assert leak.hits(done.stdout + done.stderr) == []


def test_pipeline_run_errors_print_no_secret(leak: Leak):
    wrong = leak.password + "-wrong"
    # case: (config, environment overrides, what the one-paragraph error must still say)
    cases = {
        "a value that is not a number": (leak.bad_book_order, {}, "column user_id"),
        "a wrong password": (leak.book_order, {"HOLOGRES_URL": leak.hologres_url.replace(leak.password, wrong)},
                             "password authentication failed"),
        "a malformed warehouse URL": (leak.sensor_data,
                                      {"REDSHIFT_URL": leak.redshift_url.replace("/redshift", ":port/redshift")},
                                      "port"),
        "a database that does not exist": (leak.sensor_data, {"REDSHIFT_URL": leak.redshift_url + "-missing"},
                                           "does not exist"),
    }
    for case, (config_path, overrides, expected) in cases.items():
        done = pipeline_run(leak, config_path, **overrides)
        output = done.stdout + done.stderr
        assert done.returncode == 1 and expected in done.stderr, (case, done.stderr)
        assert "Traceback" not in output, (case, output)
        assert leak.hits(output) == [] and wrong not in output, (case, output)


def stored_text(instance: Any, run_ids: list[str]) -> str:
    """Everything Dagster keeps about the runs: every event (message, metadata, errors), run config and tags."""
    from dagster._serdes import serialize_value

    parts = []
    for run_id in run_ids:
        for record in instance.all_logs(run_id):
            parts.append(serialize_value(record))
            parts.append(record.message or "")
        run = instance.get_run_by_id(run_id)
        parts.append(serialize_value(run))
        parts.append(json.dumps(run.run_config, default=str) + json.dumps(dict(run.tags)))
    return "\n".join(parts)


def dagster_database_hits(stack: Any, secrets: tuple[str, ...]) -> dict[str, list[str]]:
    """Every table of Dagster's own PostgreSQL database, searched row by row as text."""
    import psycopg
    from psycopg import sql

    found: dict[str, list[str]] = {}
    with psycopg.connect(stack.dagster_url, autocommit=True) as conn:
        tables = conn.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        for schema, table in tables:
            for secret in secrets:
                count = conn.execute(sql.SQL("SELECT count(*) FROM {} AS t WHERE strpos(t::text, %s) > 0").format(
                    sql.Identifier(schema, table)), (secret,)).fetchone()[0]
                if count:
                    found.setdefault(table, []).append(secret)
    return found


def test_dagster_runs_store_no_secret(leak: Leak, stack: Any, monkeypatch: pytest.MonkeyPatch,
                                      capfd: pytest.CaptureFixture[str]):
    import dagster as dg

    from pipeline.orchestration.factory import build_definitions, read_pipeline

    for name, value in leak.environ().items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(leak.directory)
    book = read_pipeline(leak.book_order)
    wrong = leak.password + "-wrong"
    run_ids = []
    with dg.DagsterInstance.get() as instance:  # the stack's PostgreSQL storage, as dagster dev uses
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions(book.partitions_name, [leak.good_key, leak.bad_key])
        table = defs.get_assets_def(book.table_key)
        loaded = dg.materialize([table], instance=instance, resources=defs.resources, partition_key=leak.good_key,
                                raise_on_error=False)
        assert loaded.success
        run_ids.append(loaded.run_id)
        # Failures: a wrong password, and an object with a bad value, each end up in stored events.
        monkeypatch.setenv("HOLOGRES_URL", leak.hologres_url.replace(leak.password, wrong))
        refused = dg.materialize([table], instance=instance, resources=defs.resources, partition_key=leak.good_key,
                                 raise_on_error=False)
        assert not refused.success
        run_ids.append(refused.run_id)
        monkeypatch.setenv("HOLOGRES_URL", leak.hologres_url)
        bad = dg.materialize([table], instance=instance, resources=defs.resources, partition_key=leak.bad_key,
                             raise_on_error=False)
        run_ids.append(bad.run_id)
        sensor_key = dg.AssetKey("sensor_data")
        if defs.resolve_asset_graph().has(sensor_key):
            streamed = dg.materialize([defs.get_assets_def(sensor_key)], instance=instance,
                                      resources=defs.resources, raise_on_error=False)
            assert streamed.success
            run_ids.append(streamed.run_id)
        text = stored_text(instance, run_ids)

    assert len(text) > 1000  # the events really were read back
    assert leak.hits(text) == [] and wrong not in text
    assert dagster_database_hits(stack, (*leak.secrets(), wrong)) == {}
    printed = capfd.readouterr()
    assert leak.hits(printed.out + printed.err) == []


@pytest.mark.parametrize("url", ["postgres://u:Sec%zzret-LEAK@127.0.0.1/db", "postgresql://u:Secret-LEAK@[::1/db",
                                 "postgresql://u:Sec@ret-LEAK@db.example.com/db"])
def test_a_malformed_warehouse_url_error_shows_no_part_of_the_password(url: str):
    error = error_of(out=f"url: '{url}'")
    assert error.path == "out.url"
    assert "LEAK" not in str(error) and "Sec" not in str(error)
