"""The scale-out instance configs in deploy/ are valid for the Dagster installed here.

Each variant is read the way a deployed webserver and daemon read it (``$DAGSTER_HOME/dagster.yaml``)
and every configurable part (storage, run launcher, run coordinator, compute logs) is checked
against its own class's config schema with the variables it names set. Nothing is instantiated, so
no AWS or Kubernetes API is contacted.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._serdes.config_class import class_from_code_pointer

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "dagster-ecs.yaml": "dagster_aws.ecs.launcher.EcsRunLauncher",
    "dagster-k8s.yaml": "dagster_k8s.launcher.K8sRunLauncher",
}


def env_variables(text: str) -> set[str]:
    return set(re.findall(r"^\s*(?:-\s*)?env:\s*(\w+)\s*$", text, re.MULTILINE))


@pytest.fixture
def deployed_home(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME holding the variant as dagster.yaml, with every variable it reads set."""
    source = ROOT / "deploy" / variant
    shutil.copy(source, tmp_path / "dagster.yaml")
    for name in env_variables(source.read_text()):
        monkeypatch.setenv(name, "5432" if name.endswith("_PORT") else f"test-{name.lower()}")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_part_of_the_variant_passes_its_class_config_schema(variant: str, deployed_home: Path):
    dagster_instance_config(str(deployed_home))  # the instance's own schema: raises on unknown keys
    ref = InstanceRef.from_dir(str(deployed_home))
    parts = {
        "run storage": ref.run_storage_data,
        "event log storage": ref.event_storage_data,
        "schedule storage": ref.schedule_storage_data,
        "run launcher": ref.run_launcher_data,
        "run coordinator": ref.run_coordinator_data,
        "compute logs": ref.compute_logs_data,
    }
    for part, data in parts.items():
        configurable = class_from_code_pointer(data.module_name, data.class_name)
        result = process_config(configurable.config_type(), data.config_dict)
        assert result.success, f"{part} ({data.class_name}): " + "; ".join(e.message for e in result.errors)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_runs_are_launched_elsewhere_queued_and_stored_in_postgresql(variant: str, deployed_home: Path):
    ref = InstanceRef.from_dir(str(deployed_home))
    launcher = class_from_code_pointer(ref.run_launcher_data.module_name, ref.run_launcher_data.class_name)
    assert f"{launcher.__module__}.{launcher.__name__}" == VARIANTS[variant]
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    assert ref.storage_data.class_name == "DagsterPostgresStorage"
    assert ref.storage_data.config_dict["postgres_db"]["scheme"] == "postgresql+psycopg2"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_variant_keeps_the_local_instance_storage_and_per_warehouse_limits(variant: str):
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    deployed = yaml.safe_load((ROOT / "deploy" / variant).read_text())
    assert deployed["storage"] == local["storage"]
    assert deployed["concurrency"] == local["concurrency"]
    assert deployed["run_coordinator"] == local["run_coordinator"]
    # A notified S3 sensor listens to its queue between ticks only in a thread of its own.
    assert deployed["sensors"] == local["sensors"] and local["sensors"]["use_threads"] is True


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variable_the_variant_reads_is_documented(variant: str):
    guide = (ROOT / "docs" / "scale-out.md").read_text()
    missing = sorted(name for name in env_variables((ROOT / "deploy" / variant).read_text()) if name not in guide)
    assert not missing, f"docs/scale-out.md does not name {missing}"
