"""The dg project and the components, as a user runs them: `dg check`, `dg list`, `dg launch`, `dg scaffold`.

The checkout is a dg project (``[tool.dg]``); the other tests here make a project of their own in a
temporary directory that uses the installed ``pipeline`` package, as a user's project would.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster.components.core.component_tree import ComponentTree

from pipeline.orchestration.factory import definitions_for, prepare, read_pipeline
from pipeline.orchestration.translation import Translation, object_loads
from pipeline_tests.defs.conftest import orders_csv, put_objects
from pipeline_tests.faults.proxy import TcpProxy

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
DG = ROOT / ".venv" / "bin" / "dg"


def dg_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DG), *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, **(env or {})})


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result.stdout + result.stderr


def user_project(tmp_path: Path) -> Path:
    """A dg project of a user's, depending on the installed package for the components."""
    project = tmp_path / "user_project"
    (project / "user_project" / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(textwrap.dedent("""\
        [project]
        name = "user-project"
        version = "0.1.0"

        [tool.dg]
        directory_type = "project"

        [tool.dg.project]
        root_module = "user_project"
        registry_modules = ["pipeline"]
        """), encoding="utf-8")
    (project / "user_project" / "__init__.py").write_text("", encoding="utf-8")
    (project / "user_project" / "defs" / "__init__.py").write_text("", encoding="utf-8")
    (project / "user_project" / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n"
        "defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n", encoding="utf-8")
    return project


def project_env(project: Path) -> dict[str, str]:
    # Its own configs only: the project's pipelines/ folder is empty, so the collection finds none.
    (project / "pipelines").mkdir(exist_ok=True)
    return {"PYTHONPATH": str(project), "PIPELINE_CONFIG_DIR": str(project / "pipelines")}


def listed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    ok(result)
    return json.loads(result.stdout)


def unresolved(defs: dg.Definitions, key: dg.AssetKey) -> dg.AssetsDefinition:
    """The asset as defined, for ``dg.materialize`` with resources of the test's choosing."""
    return next(a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and key in a.keys)


def table_rows(conn: Any, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]


# --------------------------------------------------------------------------- the checkout


def checkout_project(tmp_path: Path) -> Path:
    """The checkout's dg project (its pyproject.toml) in a directory of its own.

    dg reads the project root's ``.env`` into the environment, and ``pipeline local up`` writes one there
    pointing at the developer's own stack; the tests' stack is another, so they run beside a copy.
    """
    project = tmp_path / "checkout"
    project.mkdir()
    for name in ("pyproject.toml", "pipeline", "pipelines"):
        (project / name).symlink_to(ROOT / name)
    return project


def test_dg_checks_lists_and_launches_the_checkouts_pipelines_against_the_stack(
        book_order, s3, hologres, stack, sensor_stream, redshift):
    pipeline = book_order()
    key = pipeline.key("orders.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 30)})
    stream = sensor_stream()
    stream.put(40)
    # Both pipelines in one config directory, as pipelines/ holds book_order and sensor_data.
    (pipeline.directory / f"{stream.name}.yml").write_text(
        (stream.directory / f"{stream.name}.yml").read_text(encoding="utf-8"), encoding="utf-8")
    project = checkout_project(pipeline.directory.parent)
    env = {"PIPELINE_CONFIG_DIR": str(pipeline.directory), "PYTHONPATH": str(project)}

    assert "All definitions loaded successfully" in ok(dg_cli("check", "defs", cwd=project, env=env))
    ok(dg_cli("check", "yaml", cwd=project, env=env))
    defs = listed(dg_cli("list", "defs", "--json", cwd=project, env=env))
    keys = {asset["asset_key"] for asset in defs["assets"]}
    assert {pipeline.name, f"{pipeline.name}_objects", f"{pipeline.name}_rejected", stream.name} <= keys
    # Each asset links to the config that defines it (dg shows it relative to the project, when inside it).
    spec = next(s for s in pipeline.defs.resolve_all_asset_specs() if s.key == pipeline.pipeline.table_key)
    (reference,) = spec.metadata["dagster/code_references"].code_references
    assert (reference.file_path, reference.line_number) == (str(pipeline.path), 1)
    # (The shipped pipelines from the project's own pipelines/: the browser test sees both of their sources.)
    shipped = listed(dg_cli("list", "defs", "--json", cwd=project, env={**env, "PIPELINE_CONFIG_DIR": ""}))
    assert {"book_order", "sensor_data"} <= {a["asset_key"] for a in shipped["assets"]}

    # The partition exists once the sensor (or the sync job) has seen the object.
    synced = ok(dg_cli("launch", "--job", f"{pipeline.name}_sync_partitions", cwd=project, env=env))
    assert "1 objects; 1 partitions added, 0 deleted" in synced, synced[-3000:]
    ok(dg_cli("launch", "--assets", pipeline.name, "--partition", key, cwd=project, env=env))
    assert table_rows(hologres, pipeline.table) == 30
    ok(dg_cli("launch", "--assets", stream.name, cwd=project, env=env))
    assert redshift.execute(f"SELECT count(*) FROM sensor_schema.{stream.name}").fetchone()[0] == 40


def test_the_sync_job_deletes_the_partitions_of_objects_that_are_gone(book_order, s3, stack):
    pipeline = book_order()
    keys = [pipeline.key(f"part-{i}.csv") for i in range(3)]
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 2) for key in keys})
    job = pipeline.defs.resolve_job_def(f"{pipeline.name}_sync_partitions")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance, resources=pipeline.defs.resources).success
        assert sorted(instance.get_dynamic_partitions(pipeline.pipeline.partitions_name)) == keys
        s3.delete_object(Bucket=pipeline.bucket, Key=keys[1])
        kept = job.execute_in_process(instance=instance, resources=pipeline.defs.resources, run_config={
            "ops": {f"{pipeline.name}_sync_partitions_op": {"config": {"delete_missing": False}}}})
        assert kept.success
        assert len(instance.get_dynamic_partitions(pipeline.pipeline.partitions_name)) == 3
        assert job.execute_in_process(instance=instance, resources=pipeline.defs.resources).success
        assert sorted(instance.get_dynamic_partitions(pipeline.pipeline.partitions_name)) == [keys[0], keys[2]]


# --------------------------------------------------------------------------- a user's project


def test_a_component_scaffolded_from_a_seed_loads_its_data_with_no_edit(tmp_path, s3, hologres, stack):
    project = user_project(tmp_path)
    env = project_env(project)
    name = f"c{uuid.uuid4().hex[:8]}"
    prefix = f"scaffold/{name}/"
    put_objects(s3, stack.bucket, {f"{prefix}a.csv": "id,name,amount,at\n1,a,10,2024-01-02 10:00:00\n"
                                                    "2,b,20,2024-01-03 11:00:00\n3,c,,2024-01-04 12:00:00\n"})

    ok(dg_cli("scaffold", "defs", "pipeline.EmbulkLoad", name, "--seed", f"s3://{stack.bucket}/{prefix}",
              cwd=project, env=env))
    folder = project / "user_project" / "defs" / name
    assert sorted(p.name for p in folder.iterdir()) == sorted(["defs.yaml", f"{name}.yml"])
    ok(dg_cli("check", "defs", cwd=project, env=env))
    ok(dg_cli("launch", "--job", f"{name}_sync_partitions", cwd=project, env=env))
    ok(dg_cli("launch", "--assets", name, "--partition", f"{prefix}a.csv", cwd=project, env=env))
    rows = hologres.execute(f"SELECT id, name, amount, at FROM public.{name} ORDER BY id").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(1, "a", 10), (2, "b", 20), (3, "c", None)]
    assert str(rows[0][3]).startswith("2024-01-02 10:00:00")


def test_scaffolding_from_a_missing_bucket_is_a_one_line_error_and_leaves_nothing(tmp_path, stack):
    project = user_project(tmp_path)
    result = dg_cli("scaffold", "defs", "pipeline.EmbulkLoad", "orders", "--seed", "s3://no-such-bucket-here/x/",
                    cwd=project, env=project_env(project))
    assert result.returncode != 0
    assert "S3 bucket 'no-such-bucket-here' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "user_project" / "defs" / "orders").exists()


INLINE = """\
type: pipeline.EmbulkLoad
requirements:
  env: [HOLOGRES_URL]
attributes:
  name: {name}
  config:
    in:
      type: s3
      bucket: {bucket}
      path_prefix: inline/{name}/
      parser:
        type: csv
        skip_header_lines: 1
        columns:
        - {{name: order_id, type: string}}
        - {{name: user_id, type: {user_type}}}
    out:
      type: hologres
      url: '{{{{ env.HOLOGRES_URL }}}}'
      table: public.{name}
      mode: insert_direct
      primary_key: [order_id]
  translation:
    key: sales/orders_{name}
    key_prefix: warehouse
    group: sales
    owners: [team:data, ana@example.com]
    tags: {{tier: gold}}
    description: Orders from S3.
    freshness: {{fail_within: 2h, warn_within: 1h}}
    pool: hologres-small
    checks: {{schedule: null, with_each_object: [primary_key_unique]}}
    retry_policy: {{max_retries: 2, delay: 1s, backoff: exponential}}
"""


def test_a_translation_block_changes_keys_groups_owners_and_tags_in_dg_list_defs(tmp_path, stack):
    project = user_project(tmp_path)
    env = project_env(project)
    name = f"c{uuid.uuid4().hex[:8]}"
    folder = project / "user_project" / "defs" / name
    folder.mkdir()
    (folder / "defs.yaml").write_text(INLINE.format(name=name, bucket=stack.bucket, user_type="long"),
                                      encoding="utf-8")

    defs = listed(dg_cli("list", "defs", "--json", cwd=project, env=env))
    assets = {a["asset_key"]: a for a in defs["assets"]}
    table = f"warehouse/sales/orders_{name}"
    assert set(assets) == {table, f"{table}_objects", f"{table}_rejected"}
    for asset in assets.values():
        assert asset["group_name"] == "sales"
        assert asset["owners"] == [{"team": "data"}, {"email": "ana@example.com"}]
        assert {"key": "tier", "value": "gold"} in asset["tags"]
    assert assets[table]["description"] == "Orders from S3."
    assert assets[table]["dependency_keys"] == [f"{table}_objects"]
    assert not defs["schedules"]  # checks.schedule: null
    jobs = {job["name"] for job in defs["jobs"]}
    assert f"{name}_load" in jobs

    # The translation reaches what Dagster runs: the pool, the freshness policy, checks with each object.
    sys.path.insert(0, str(project))
    try:
        module = importlib.import_module("user_project.defs")
        built = ComponentTree(defs_module=module, project_root=project, code_location_name="u").build_defs()
    finally:
        sys.path.remove(str(project))
        for loaded in [m for m in sys.modules if m.startswith("user_project")]:
            del sys.modules[loaded]
    load = built.resolve_assets_def(dg.AssetKey.from_user_string(table))
    assert load.op.pool == "hologres-small"
    assert load.op.retry_policy == dg.RetryPolicy(max_retries=2, delay=1.0, backoff=dg.Backoff.EXPONENTIAL)
    spec = next(s for s in built.resolve_all_asset_specs() if s.key == load.key)
    assert spec.freshness_policy == dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2),
                                                                   warn_window=timedelta(hours=1))
    checks = built.resolve_job_def(f"{name}_load").asset_layer.asset_graph.asset_check_keys
    assert checks == {dg.AssetCheckKey(load.key, name) for name in ("rows_accounted_for", "primary_key_unique")}


def test_dg_check_defs_names_the_line_of_a_bad_key_in_an_inline_config(tmp_path, stack):
    project = user_project(tmp_path)
    env = project_env(project)
    name = f"c{uuid.uuid4().hex[:8]}"
    folder = project / "user_project" / "defs" / name
    folder.mkdir()
    text = INLINE.format(name=name, bucket=stack.bucket, user_type="lng")
    (folder / "defs.yaml").write_text(text, encoding="utf-8")
    line = text.splitlines().index("        - {name: user_id, type: lng}") + 1

    ok(dg_cli("check", "yaml", cwd=project, env=env))  # the shape is right; the value is the engine's to judge
    result = dg_cli("check", "defs", cwd=project, env=env)
    assert result.returncode != 0
    assert (f"config in.parser.columns[1].type: 'lng' is not one of boolean, long, double, string, timestamp, json "
            f"({folder / 'defs.yaml'}, line {line})") in result.stdout + result.stderr


# --------------------------------------------------------------------------- automation and retries


def test_with_trigger_automation_the_sensor_registers_objects_and_the_condition_requests_their_loads(
        book_order, s3, stack):
    made = book_order(incremental=False)
    pipeline = prepare(read_pipeline(made.path), trigger="automation")
    defs = definitions_for([pipeline])
    keys = [made.key("a.csv"), made.key("b.csv")]
    put_objects(s3, made.bucket, {key: orders_csv(0, 3) for key in keys})
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == pipeline.table_key)
    assert spec.automation_condition == object_loads()  # unless the translation names another
    assert f"{pipeline.name}_automation" in {s.name for s in defs.sensors}
    sensor = defs.resolve_sensor_def(f"{pipeline.name}_sensor")
    table = unresolved(defs, pipeline.table_key)

    def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, resources=defs.resources, cursor=cursor) as context:
            result = sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        return result

    with dg.instance_for_test() as instance:
        first = tick(instance, None)
        assert not first.run_requests  # the condition launches the loads, not the sensor
        assert sorted(first.dynamic_partitions_requests[0].partition_keys) == keys
        assert {e.partition for e in first.asset_events} == set(keys)  # each object observed, with its ETag
        evaluated = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert evaluated.get_requested_partitions(pipeline.table_key) == set(keys)
        for key in keys:
            assert dg.materialize([table], instance=instance, resources=defs.resources, partition_key=key,
                                  selection=dg.AssetSelection.assets(pipeline.table_key)).success
        # Loaded, an object is not requested again; re-uploaded, the sweep requests its run.
        again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluated.cursor)
        assert again.get_requested_partitions(pipeline.table_key) == set()
        put_objects(s3, made.bucket, {keys[1]: orders_csv(0, 5)})
        swept = tick(instance, first.cursor)
        assert [r.partition_key for r in swept.run_requests] == [keys[1]]


def test_a_load_that_fails_once_is_retried_by_its_retry_policy_and_lands_exactly_once(book_order, s3, hologres,
                                                                                       stack):
    made = book_order()
    key = made.key("big.csv")
    put_objects(s3, made.bucket, {key: orders_csv(0, 40_000)})
    pipeline = prepare(read_pipeline(made.path), translation=Translation(retry_policy=dg.RetryPolicy(max_retries=2)))
    defs = definitions_for([pipeline])
    table = unresolved(defs, pipeline.table_key)
    with TcpProxy("127.0.0.1", stack.standin_port) as proxy, dg.instance_for_test() as instance:
        url = stack.hologres_url.replace(f":{stack.standin_port}/", f":{proxy.port}/")
        instance.add_dynamic_partitions(pipeline.partitions_name, [key])
        proxy.cut_after(200_000)  # the first attempt loses its connection mid-COPY; the retry's is not cut
        resources = {**defs.resources, pipeline.warehouse_resource_key: type(
            defs.resources[pipeline.warehouse_resource_key])(conninfo=url)}
        result = dg.materialize([table], instance=instance, resources=resources, partition_key=key,
                                selection=dg.AssetSelection.assets(pipeline.table_key))
        assert proxy.cut_done.is_set()
        restarts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    assert result.success
    assert len(restarts) == 1
    assert table_rows(hologres, made.table) == 40_000
    (count,) = hologres.execute(f"SELECT count(DISTINCT order_id) FROM public.{made.table}").fetchone()
    assert count == 40_000
