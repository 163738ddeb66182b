"""``python -m pipeline.local.standin``: the stand-in proxy that ``pipeline local up`` runs."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from pipeline.local.standin.flavors import rules_for
from pipeline.local.standin.proxy import Options, serve


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.local.standin", description=__doc__)
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT to accept clients on")
    parser.add_argument("--upstream", type=_address, required=True, help="HOST:PORT of PostgreSQL")
    parser.add_argument("--database", action="append", default=[], metavar="NAME=FLAVOR[:VERSION]",
                        help="a database that gets a target's rules (hologres, redshift); others pass through")
    parser.add_argument("--side-conninfo", default="",
                        help="conninfo with {database}, for the stand-in's own connections (load-error rows)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flavors: dict[str, str] = {}
    settings: dict[str, str] = {}
    for item in args.database:
        name, _, flavor = item.partition("=")
        flavor, _, version = flavor.partition(":")
        flavors[name] = flavor
        if version:
            settings[f"{name}.version"] = version
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    options = Options(upstream=args.upstream, flavors=flavors, rules_for=rules_for, side_conninfo=args.side_conninfo,
                      settings=settings)
    logging.getLogger(__name__).info("stand-in on %s:%s for %s, PostgreSQL at %s:%s", *args.listen,
                                     ", ".join(f"{k} ({v})" for k, v in flavors.items()), *args.upstream)
    serve(args.listen, options, stop=stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
