"""The Dagster code location: assets, checks, sensors and jobs for every config in ``pipelines/``.

``$PIPELINE_CONFIG_DIR`` points elsewhere. Importing reads the configs from disk and nothing
else: no AWS or warehouse call, and no failure when a secret's variable is unset.
"""

import dagster as dg

from pipeline.defs.factory import build_definitions

defs: dg.Definitions = build_definitions()
