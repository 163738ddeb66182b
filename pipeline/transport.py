"""Transport: data and credentials leave the machine only over TLS.

An AWS endpoint that is not on the loopback interface must be ``https://``; a warehouse that is not on
the loopback interface (or a Unix socket) needs ``sslmode`` of at least ``require``. Anything weaker is
refused at config validation unless the config says ``allow_insecure: true`` for that side.

The checks take endpoints and conninfos, not configs: :mod:`pipeline.config` runs them while it
validates, so this module must not import it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import ConfigError

# sslmode values that encrypt the connection whatever the server prefers.
STRONG_SSLMODES = ("require", "verify-ca", "verify-full")
# libpq's default when neither the conninfo nor PGSSLMODE says: falls back to plaintext.
LIBPQ_DEFAULT_SSLMODE = "prefer"
# Names that can never resolve (RFC 6761), so nothing can be sent to them: the Dagster layer's
# placeholders for unset variables live here.
_UNREACHABLE_SUFFIX = ".invalid"
_HOSTNAME = re.compile(r"[A-Za-z0-9.:-]+")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; a Unix socket directory also stays on the machine."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost" or host.startswith("/") or host.startswith("@"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def _unreachable(host: str) -> bool:
    return host.strip().rstrip(".").lower().endswith(_UNREACHABLE_SUFFIX)


def redact_url(url: str) -> str:
    """``url`` without any user or password in it, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_aws(endpoint: str | None, variables: Iterable[str], environ: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` when AWS would be reached without TLS.

    ``endpoint`` is in.endpoint; without one, boto3 takes the first of ``variables`` set in ``environ``
    (the services' ``AWS_ENDPOINT_URL_<SERVICE>``, then ``AWS_ENDPOINT_URL``), so each one set is checked.
    """
    if endpoint:
        candidates = [(endpoint, "in.endpoint", "in.endpoint")]
    else:
        candidates = [(environ[name], f"in.endpoint (unset, so {name} is used)", name)
                      for name in variables if environ.get(name)]
    for url, path, where in candidates:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "https" or is_loopback(host) or _unreachable(host):
            continue
        raise ConfigError(
            path,
            f"{redact_url(url)} is not https and {host or 'its host'} is not a loopback address: "
            f"AWS credentials and data would cross the network in the clear. Use an https:// endpoint in "
            f"{where}, or set in.allow_insecure: true if this network is trusted.",
        )


def check_warehouse(conninfo: str, environ: Mapping[str, str], out_keys: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` when the warehouse at ``conninfo`` would be reached without TLS.

    ``environ`` is the environment libpq will read (``PGHOST``, ``PGSSLMODE`` ...); ``out_keys`` are the
    keys written under ``out``, so the error names the one to change.
    """
    from psycopg.conninfo import conninfo_to_dict

    keys = set(out_keys)
    params = conninfo_to_dict(conninfo)
    # libpq falls back to PGHOST / PGHOSTADDR / PGSSLMODE, and to a local Unix socket with no host at all.
    hosts = [h for value in (params.get("host") or environ.get("PGHOST") or "",
                             params.get("hostaddr") or environ.get("PGHOSTADDR") or "")
             for h in str(value).split(",") if h.strip()]
    remote = [h for h in hosts if not is_loopback(h) and not _unreachable(h)]
    if not remote:
        return
    sslmode = str(params.get("sslmode") or environ.get("PGSSLMODE") or LIBPQ_DEFAULT_SSLMODE)
    if sslmode in STRONG_SSLMODES:
        return
    if "sslmode" in keys:
        path, fix = "out.sslmode", "set out.sslmode: require (or verify-full)"
    elif "url" in keys:
        path, fix = "out.url", "add ?sslmode=require (or verify-full) to out.url, or set out.sslmode: require"
    else:
        path, fix = "out.sslmode", "set out.sslmode: require (or verify-full)"
    # A password with an unencoded @ or / shifts into the host: name the host only when it looks like one.
    host = remote[0] if _HOSTNAME.fullmatch(remote[0]) else "a host that is not on this machine"
    said = f"sslmode={sslmode}" if params.get("sslmode") or environ.get("PGSSLMODE") else "no sslmode"
    raise ConfigError(
        path,
        f"{said} lets the connection to {host} fall back to plaintext, with the password and data in the "
        f"clear: {fix}, or set out.allow_insecure: true if this network is trusted.",
    )
