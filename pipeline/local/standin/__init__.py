"""Local stand-ins for Hologres and Redshift: PostgreSQL behind each target's documented rules.

``python -m pipeline.local.standin`` runs the proxy that ``pipeline local up`` starts; ``setup_sql``
is what each stand-in database holds inside. docs/targets.md lists every rule with its source.
"""

from pipeline.local.standin.flavors import setup_sql

__all__ = ["setup_sql"]
