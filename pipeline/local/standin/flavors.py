"""The stand-in flavors by name: each target's rules for a session, and what its database holds inside.

The proxy is given :func:`rules_for` (``python -m pipeline.local.standin`` passes it) rather than
importing it: the rules call the proxy's session, so the proxy must not import them back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.local.standin import hologres, redshift
from pipeline.local.standin.rules import REFUSE_FUNCTION, Rules

if TYPE_CHECKING:
    from pipeline.local.standin.proxy import Session

FLAVORS: dict[str, type[Rules]] = {"hologres": hologres.HologresRules, "redshift": redshift.RedshiftRules}
_SETUP = {"hologres": hologres.SETUP, "redshift": redshift.SETUP}


def rules_for(flavor: str, session: Session) -> Rules:
    if flavor not in FLAVORS:
        raise ValueError(f"no stand-in rules for {flavor!r}")
    return FLAVORS[flavor](session)


def setup_sql(flavor: str) -> str:
    """What a stand-in database needs inside (functions, catalogs), idempotent."""
    if flavor not in _SETUP:
        raise ValueError(f"no stand-in for {flavor!r}")
    return REFUSE_FUNCTION + _SETUP[flavor]
