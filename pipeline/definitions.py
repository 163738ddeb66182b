"""The Dagster code location: the components in the ``dg`` defs folder ``pipeline/defs``.

``pipeline/defs/pipelines/defs.yaml`` makes every config in ``pipelines/`` (or ``$PIPELINE_CONFIG_DIR``)
a pipeline; ``dg scaffold defs pipeline.EmbulkLoad NAME`` adds one of its own. Importing reads the
configs from disk and nothing else: no AWS or warehouse call, and no failure when a secret's
variable is unset (a placeholder stands in until a run reads the config again).
"""

from pathlib import Path

import dagster as dg

import pipeline.defs


def _definitions() -> dg.Definitions:
    here = Path(__file__).resolve().parent
    if (here.parent / "pyproject.toml").is_file():
        # In a checkout, or an editable install: the dg project this file belongs to.
        return dg.load_from_defs_folder(path_within_project=here)
    # Installed from a wheel: site-packages is not a project, so the defs folder is the package's and the
    # project directory (where configs are looked for) is where Dagster runs.
    from dagster.components.core.component_tree import ComponentTree

    return ComponentTree(defs_module=pipeline.defs, project_root=Path.cwd(), code_location_name="pipeline").build_defs()


defs: dg.Definitions = _definitions()
