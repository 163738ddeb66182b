"""``pipeline guess SEED.yml -o CONFIG.yml``: fill ``in.parser`` from a sample, as `embulk guess` does.

The seed is rewritten as written (``{{ env.X }}`` stays a reference, no secret is resolved into
the output); ``in.parser`` is completed: what the seed's says stays fixed, the rest is guessed.
The CREATE TABLE the run would issue is printed too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("seed", help="seed config: in and out without in.parser")
    parser.add_argument("-o", "--output", help="write the completed config here (default: print it)")
    parser.add_argument("-g", "--guess", action="append", default=[], metavar="PLUGIN",
                        help="a guess plugin to add, as embulk guess -g: csv_all_strings (every column a string); "
                             "the seed's exec.guess_plugins are added too")


def run(args: argparse.Namespace) -> int:
    import yaml

    from pipeline import config as config_module

    seed_path = Path(args.seed)
    if seed_path.suffix == ".liquid":
        raise config_module.ConfigError("", f"{seed_path}: guess writes the seed back with its parser filled in, and "
                                            "a rendered Liquid file would carry every value it rendered (secrets "
                                            "too); write the seed as .yml, with '{{ env.NAME }}' references")
    try:
        raw = config_module.load_yaml(seed_path.read_text(encoding="utf-8"), str(seed_path))
    except FileNotFoundError:
        raise config_module.ConfigError("", f"no seed config at {seed_path}") from None
    seed = config_module.parse(raw, name=config_module._name_from_path(seed_path), path=seed_path,
                               require_parser=False)
    unknown = [name for name in args.guess if name not in config_module.GUESS_PLUGINS]
    if unknown:
        raise config_module.ConfigError("", f"-g {unknown[0]}: not a guess plugin here (known: "
                                            f"{', '.join(config_module.GUESS_PLUGINS)})")
    plugins = {*args.guess, *seed.exec.guess_plugins}
    completed = guess_config(seed, raw, all_strings="csv_all_strings" in plugins)
    text = yaml.safe_dump(completed, sort_keys=False, allow_unicode=True, default_flow_style=False, width=110)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    final = config_module.parse(completed, name=seed.name, path=seed_path)
    print(f"\n-- the table {final.output.qualified_table} that `pipeline run` creates if it is missing "
          f"({final.output.type}):", file=sys.stderr)
    print(create_table_sql(final), file=sys.stderr)
    return 0


def guess_config(seed, raw: dict, *, all_strings: bool = False) -> dict:
    """The seed mapping with ``in.parser`` guessed from the first non-empty object of the source."""
    from pipeline import registry
    from pipeline.errors import SourceError

    if seed.is_stream:
        raise SourceError("guess reads objects; for a stream list in.parser.columns in the config")

    def s3() -> object:
        from pipeline.sources.aws import client

        return client("s3", **seed.input.aws.client_kwargs())

    store = registry.store(seed.input, s3)
    sample_object = store.first()
    if sample_object is None:
        raise SourceError(f"no non-empty object under {seed.input.uri} to guess from")
    # As embulk guess does, what the seed's in.parser says stays fixed and the rest is guessed with it.
    seed_parser = raw["in"].get("parser") or {}
    blob = store.blob(sample_object)
    kind = seed_parser.get("type") or registry.detected_type(_head(blob))
    parser = registry.parser_module(kind).guess(blob, seed_parser, all_strings=all_strings)
    completed = dict(raw)
    completed["in"] = {**raw["in"], "parser": parser}
    return completed


def _head(blob, nbytes: int = 4096) -> bytes:
    """The first bytes of ``blob``, decompressed."""
    head = b""
    chunks = blob.chunks()
    try:
        for chunk in chunks:
            head += chunk
            if len(head) >= nbytes:
                break
    finally:
        chunks.close()
    return head[:nbytes]


def create_table_sql(config) -> str:
    """The CREATE TABLE (and Hologres property calls) a run issues for a missing table."""
    from pipeline.warehouse.ddl import render

    if config.is_stream:
        from pipeline.stream import StreamLoad

        target = StreamLoad(config).target
    else:
        from pipeline.batch import BatchLoad

        target = BatchLoad(config).target
    return render(target.create_statements())


# The warehouse URL's variable a scaffolded config reads, by out.type (as `pipeline local env` exports them).
URL_VARIABLES = {"hologres": "HOLOGRES_URL", "redshift": "REDSHIFT_URL", "postgresql": "POSTGRES_URL"}


def scaffold_component(directory: Path, *, type_name: str, seed: str, table: str | None = None,
                       target: str = "hologres", url_variable: str | None = None,
                       mode: str = "insert_direct") -> list[Path]:
    """``dg scaffold defs pipeline.EmbulkLoad NAME --seed ...``: a guessed config and the defs.yaml that points at it.

    ``seed`` is ``s3://bucket/prefix/`` (the config's in and out are written from it and the options) or a
    seed config file, as ``pipeline guess`` takes. The config is complete: ``pipeline run`` and the
    component load it as written, its warehouse URL read from ``url_variable`` at run time.
    """
    import os

    import yaml

    from pipeline import config as config_module

    name = config_module.identifier(directory.name)
    if seed.startswith("s3://"):
        bucket, _, prefix = seed[len("s3://"):].partition("/")
        if not bucket:
            raise config_module.ConfigError("", f"--seed {seed}: name a bucket, s3://bucket/prefix/")
        variable = url_variable or URL_VARIABLES.get(target)
        if variable is None:
            raise config_module.ConfigError("out.type", f"{target!r} is not one of {', '.join(URL_VARIABLES)}")
        raw: dict = {"in": {"type": "s3", "bucket": bucket, "path_prefix": prefix},
                     "out": {"type": target, "url": f"{{{{ env.{variable} }}}}", "table": table or f"public.{name}",
                             "mode": mode}}
    else:
        seed_path = Path(seed)
        try:
            raw = config_module.load_yaml(seed_path.read_text(encoding="utf-8"), str(seed_path))
        except FileNotFoundError:
            raise config_module.ConfigError("", f"no seed config at {seed_path}") from None
    # Guessing reads S3 only: the warehouse's variable may be unset while scaffolding.
    unset = config_module.unset_variables(yaml.safe_dump(raw), os.environ)
    environ = {**os.environ, **{variable: f"postgresql://unset.invalid/{variable}" for variable in unset}}
    parsed = config_module.parse(raw, name=name, require_parser=False, environ=environ)
    completed = guess_config(parsed, raw, all_strings="csv_all_strings" in parsed.exec.guess_plugins)
    config_module.parse(completed, name=name, environ=environ)  # what the component will read must be valid
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / f"{name}.yml"
    config_path.write_text(
        f"# Guessed by `dg scaffold defs {type_name}` from {seed}; edit freely, `pipeline guess` rewrites in.parser.\n"
        + yaml.safe_dump(completed, sort_keys=False, allow_unicode=True, default_flow_style=False, width=110),
        encoding="utf-8")
    defs_path = directory / "defs.yaml"
    defs_path.write_text(
        f"type: {type_name}\n"
        "attributes:\n"
        f"  path: {config_path.name}\n"
        "  # trigger: automation          # the sensor registers objects, an automation condition loads them\n"
        "  # translation:                 # keys, group, owners, tags, checks, freshness, retries\n"
        "  #   group: my_group\n"
        "  #   owners: [team:data]\n",
        encoding="utf-8")
    return [defs_path, config_path]
