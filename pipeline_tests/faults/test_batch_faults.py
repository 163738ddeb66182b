"""S3 to the Hologres stand-in under faults injected from outside: kill -9, a lost warehouse, a flaky S3, KMS.

Every fault comes from outside the engine: signals to a ``pipeline run`` subprocess, a TCP proxy
or a restart in front of PostgreSQL, an HTTP proxy in front of moto, botocore hooks on a client
passed in. After each, the table must hold exactly what the ledger says, and a re-run exactly the
source.
"""

from __future__ import annotations

import random
import signal
import time
import uuid

import pytest

from pipeline import config as config_module
from pipeline.batch import BatchLoad
from pipeline.errors import SourceError
from pipeline.generate import generate_books
from pipeline.sources import aws
from pipeline_tests.faults.loads import (
    assert_exactly_the_source,
    assert_table_matches_ledger,
    ledger,
    pipeline_cli,
    pipeline_popen,
    table_state,
    upload_books,
    write_config,
)
from pipeline_tests.faults.proxy import HttpFaultProxy, TcpProxy, seeded_s3_faults

pytestmark = pytest.mark.stack


@pytest.fixture
def unique() -> str:
    return f"f{uuid.uuid4().hex[:10]}"


@pytest.mark.slow
def test_twenty_kill_9_at_seeded_random_points_then_a_rerun_leave_exactly_the_source(
        stack, s3, hologres, tmp_path, unique):
    truths = upload_books(s3, stack.bucket, f"{unique}/", objects=8, rows=20_000)
    config = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique)
    started = time.monotonic()
    reference = pipeline_cli("run", str(config))
    full_run = time.monotonic() - started
    assert reference.returncode == 0, reference.stderr
    assert_exactly_the_source(hologres, unique, unique, truths)
    rng = random.Random(20240611)
    partial = 0
    for _ in range(20):
        if len(ledger(hologres, unique)) == len(truths):
            # Everything is in: start over, so that every kill lands in the middle of a load.
            hologres.execute(f"TRUNCATE public.{unique}")
            hologres.execute("DELETE FROM public.pipeline_object_ledger WHERE pipeline = %s", (unique,))
        # A seeded point of the load: after `after` more objects committed, plus a random slice of one.
        before, after, extra = len(ledger(hologres, unique)), rng.randint(0, 6), rng.uniform(0.0, full_run / 8)
        process = pipeline_popen("run", str(config))
        deadline = time.monotonic() + 60
        while len(ledger(hologres, unique)) < before + after and process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(extra)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        done = assert_table_matches_ledger(hologres, unique, unique, truths)
        partial += 0 < len(done) < len(truths)
    assert partial >= 10, "too few kills landed between the first and the last object"
    rerun = pipeline_cli("run", str(config))
    assert rerun.returncode == 0, rerun.stderr
    assert_exactly_the_source(hologres, unique, unique, truths)
    assert "nothing new to load" in pipeline_cli("run", str(config)).stdout


def test_a_warehouse_connection_cut_mid_load_is_a_clear_error_and_the_rerun_completes(
        stack, s3, hologres, tmp_path, unique):
    truths = upload_books(s3, stack.bucket, f"{unique}/", objects=6, rows=20_000)
    with TcpProxy("127.0.0.1", stack.standin_port) as proxy:
        url = stack.hologres_url.replace(f":{stack.standin_port}/", f":{proxy.port}/")
        config = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, url=url, threads=1)
        # Armed before the run by bytes sent, not by time: one object and a half is mid-COPY of the
        # second object (one writer, objects in key order), however fast or slow the machine is.
        size = s3.head_object(Bucket=stack.bucket, Key=sorted(truths)[0])["ContentLength"]
        proxy.cut_after(size * 3 // 2)
        process = pipeline_popen("run", str(config))
        _, stderr = process.communicate(timeout=60)
        assert proxy.cut_done.is_set()
        assert_table_matches_ledger(hologres, unique, unique, truths)
        assert 0 < len(ledger(hologres, unique)) < len(truths)
        assert process.returncode == 1
        assert "Traceback" not in stderr, stderr
        assert "the warehouse connection was lost" in stderr, stderr
        assert f"s3://{stack.bucket}/{sorted(truths)[1]}" in stderr
        rerun = pipeline_cli("run", str(config))
    assert rerun.returncode == 0, rerun.stderr
    assert_exactly_the_source(hologres, unique, unique, truths)


def test_with_embulks_retry_limit_a_connection_cut_mid_load_is_retried_and_every_row_lands_once(
        stack, s3, hologres, tmp_path, unique):
    """out.retry_limit / retry_wait (Embulk's keys, milliseconds): the object's transaction runs again."""
    truths = upload_books(s3, stack.bucket, f"{unique}/", objects=6, rows=20_000)
    with TcpProxy("127.0.0.1", stack.standin_port) as proxy:
        url = stack.hologres_url.replace(f":{stack.standin_port}/", f":{proxy.port}/")
        config = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, url=url, threads=1,
                              retry_limit=3, retry_wait=50, max_retry_wait=200)
        process = pipeline_popen("run", str(config))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ledger(hologres, unique):
            time.sleep(0.01)
        proxy.cut_after(300_000)  # mid-COPY of a later object, after at least one committed
        stdout, stderr = process.communicate(timeout=120)
        assert proxy.cut_done.is_set()
    assert process.returncode == 0, stderr
    assert "running its transaction again in 0.1 s (retry 1)" in stdout + stderr
    assert_exactly_the_source(hologres, unique, unique, truths)


@pytest.mark.slow
def test_postgresql_restarted_mid_load_is_a_clear_error_and_the_rerun_completes(
        stack, s3, own_stack, tmp_path, unique):
    import psycopg

    truths = upload_books(s3, stack.bucket, f"{unique}/", objects=6, rows=20_000)
    own_stack.up()
    url = own_stack.env()["HOLOGRES_URL"]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with TcpProxy("127.0.0.1", port) as proxy:
        # One writer, objects in key order, and the traffic held after one object and a half by bytes
        # sent: the restart lands mid-COPY of the second object whatever the machine's speed.
        config = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, threads=1,
                              url=url.replace(f":{port}/", f":{proxy.port}/"))
        first, second = sorted(truths)[:2]
        proxy.hold_after(s3.head_object(Bucket=stack.bucket, Key=first)["ContentLength"] * 3 // 2)
        process = pipeline_popen("run", str(config))
        assert proxy.held.wait(120)
        own_stack.down()  # PostgreSQL stops (fast shutdown) under the load, then comes back
        proxy.release.set()
        _, stderr = process.communicate(timeout=60)
    own_stack.up()
    with psycopg.connect(url, autocommit=True) as conn:
        assert 0 < len(assert_table_matches_ledger(conn, unique, unique, truths)) < len(truths)
        assert process.returncode == 1
        assert "Traceback" not in stderr, stderr
        assert "the warehouse connection was lost" in stderr, stderr
        assert f"s3://{stack.bucket}/{second}" in stderr
        write_config(config, f"{unique}/", unique, threads=1, url=url)  # the proxy is gone: straight in
        rerun = pipeline_cli("run", str(config))
        assert rerun.returncode == 0, rerun.stderr
        assert_exactly_the_source(conn, unique, unique, truths)


def test_s3_answering_slowdown_500_and_cut_bodies_through_a_proxy_still_loads_exactly(
        stack, s3, hologres, tmp_path, unique):
    truths = upload_books(s3, stack.bucket, f"{unique}/", objects=4, rows=5_000)
    config = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique)
    with HttpFaultProxy(stack.aws_endpoint, seeded_s3_faults(7, share=0.2, cut_share=0.3)) as proxy:
        result = pipeline_cli("run", str(config), env={"AWS_ENDPOINT_URL": proxy.url})
    assert result.returncode == 0, result.stderr
    assert proxy.faults["slowdown"] + proxy.faults["internal"] >= 2 and proxy.faults["cut"] >= 1
    assert_exactly_the_source(hologres, unique, unique, truths)


def test_s3_faults_on_the_checked_path_with_rejects_still_account_for_every_record(
        stack, s3, hologres, tmp_path, unique):
    body = b"".join(generate_books(3_000, seed=99)).replace(b",5,", b",five,", 40)
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/bad.csv", Body=body)
    config = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique,
                          parser={"stop_on_invalid_record": False})
    with HttpFaultProxy(stack.aws_endpoint, seeded_s3_faults(11, share=0.2, cut_share=0.5)) as proxy:
        result = pipeline_cli("run", str(config), env={"AWS_ENDPOINT_URL": proxy.url})
    assert result.returncode == 0, result.stderr
    assert sum(proxy.faults.values()) >= 1
    ((rows, rejected),) = ledger(hologres, unique).values()
    assert rows + rejected == 3_000 and rejected == sum(b",five," in line for line in body.splitlines())
    assert table_state(hologres, unique)[:2] == (rows, rows)


@pytest.mark.parametrize(("status", "code", "message"), [
    (403, "AccessDenied", "User: arn:aws:iam::123456789012:user/loader is not authorized to perform: kms:Decrypt"),
    (400, "KMS.DisabledException", "arn:aws:kms:ap-northeast-1:123456789012:key is disabled."),
])
def test_a_kms_refusal_names_key_and_object_and_commits_nothing_for_it(
        stack, s3, kms, hologres, tmp_path, unique, status, code, message):
    from botocore.awsrequest import AWSResponse

    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    plain = upload_books(s3, stack.bucket, f"{unique}/a-", objects=1, rows=100, seed=1)
    secret = upload_books(s3, stack.bucket, f"{unique}/b-", objects=1, rows=100, seed=2,
                          ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    (secret_key,) = secret
    config = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, threads=1)
    reader = aws.client("s3")

    class _Raw:
        def stream(self, **_):
            yield (f"<Error><Code>{code}</Code><Message>{message}</Message></Error>").encode()

    def refuse_encrypted(request, **_):
        if secret_key in request.url and request.method == "GET":
            return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw())
        return None

    reader.meta.events.register("before-send.s3.GetObject", refuse_encrypted)
    with pytest.raises(SourceError) as raised:
        BatchLoad(config_module.load(config), s3_client=reader).run()
    text = str(raised.value)
    assert key_id in text and f"s3://{stack.bucket}/{secret_key}" in text
    assert set(ledger(hologres, unique)) == set(plain)  # only the readable object, nothing of the other
    assert_table_matches_ledger(hologres, unique, unique, {**plain, **secret})
