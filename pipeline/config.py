"""The pipeline config language: Embulk's ``in`` / ``filters`` / ``exec`` / ``out`` YAML.

A config is read, interpolated from the environment and validated into frozen dataclasses
before anything runs; every error names the YAML path of the bad key. Secrets are never
written into a config: ``{{ env.NAME }}`` (Embulk's liquid form) and ``${NAME}`` take them
from the environment, and the dataclasses keep them out of ``repr``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import registry
from pipeline.errors import ConfigError
from pipeline.formats.csv_parser import CsvParserConfig  # noqa: F401 -- where callers have always found it
from pipeline.formats.decode import check_decoders
from pipeline.inputs import (
    AwsSettings,
    JsonParserConfig,
    KinesisInputConfig,
    NotificationsConfig,
    S3InputConfig,
)
from pipeline.schema import COLUMN_TYPES, Column
from pipeline.transport import check_aws, check_warehouse, is_loopback

if TYPE_CHECKING:
    from pipeline.registry import RegisteredInput

OUTPUT_TYPES = ("postgresql", "hologres", "redshift")
MODES = ("insert", "insert_direct", "truncate_insert", "replace", "merge", "append")
STARTING_POSITIONS = ("trim_horizon", "latest", "at_timestamp")
NEWLINES = ("CRLF", "LF", "CR")
HOLOGRES_TABLE_PROPERTIES = (
    "orientation",
    "distribution_key",
    "clustering_key",
    "event_time_column",
    "segment_key",
    "bitmap_columns",
    "dictionary_encoding_columns",
    "time_to_live_in_seconds",
    "storage_format",
    "table_group",
    "binlog_level",
    "binlog_ttl",
)

_LIQUID = re.compile(r"\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*default:\s*(['\"])(.*?)\2\s*)?\}\}")
_SHELL = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# --------------------------------------------------------------------------- dataclasses


EXEC_MODES = ("micro_batch", "continuous")
MAX_RETRY_WAIT_SECONDS = 3600.0


@dataclass(frozen=True)
class ExecConfig:
    mode: str = "micro_batch"  # streams: one bounded run per sensor request, or one long-running follow
    max_threads: int = 4
    window_seconds: float = 0.5
    max_records: int = 100_000
    max_bytes: int = 64 << 20
    max_runtime: float | None = None
    # Seconds without a new object or record after which the table's freshness check fails; None: no check.
    expect_within: float | None = None
    # How often the sensor runs a failed load again, and how long it waits before the first retry
    # (the wait doubles with each failure, up to MAX_RETRY_WAIT_SECONDS).
    retries: int = 5
    retry_wait: float = 60.0
    # Embulk's guess_plugins: what `pipeline guess` adds to its csv guess (csv_all_strings: every column a string).
    guess_plugins: tuple[str, ...] = ()
    # Embulk's min_output_tasks: COPY writers one object's pages are dealt to (page scattering); None: one per
    # CPU core for objects large enough (SCATTER_BYTES_PER_WRITER each), as Embulk's default of 1x the cores.
    min_output_tasks: int | None = None

    def wait_before_retry(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt before the next one."""
        return min(self.retry_wait * 2 ** max(failures - 1, 0), max(MAX_RETRY_WAIT_SECONDS, self.retry_wait))


@dataclass(frozen=True)
class S3StagingConfig:
    bucket: str
    prefix: str = "pipeline-staging/"
    sse_kms_key_id: str | None = None
    format: str = "json"


@dataclass(frozen=True)
class OutputConfig:
    type: str
    conninfo: str = field(repr=False)
    schema: str
    table: str
    mode: str = "insert_direct"
    merge_keys: tuple[str, ...] = ()
    primary_key: tuple[str, ...] = ()
    create_table: bool = True
    column_options: Mapping[str, str] = field(default_factory=dict)
    table_properties: Mapping[str, Any] = field(default_factory=dict)
    distkey: str | None = None
    sortkey: tuple[str, ...] = ()
    s3_staging: S3StagingConfig | None = None
    iam_role: str | None = None
    rejected_table: str | None = None
    state_schema: str | None = None
    allow_insecure: bool = False
    truncate_columns: bool = False  # cut over-long strings to the column's length (Redshift's TRUNCATECOLUMNS)
    # Embulk's retry_limit / retry_wait / max_retry_wait (milliseconds, as Embulk's): when any is set, an
    # object's transaction that lost its connection, or could not connect, is run again that many times,
    # waiting retry_wait, doubling, at most max_retry_wait. None: only serialization conflicts are retried.
    retry_limit: int | None = None
    retry_wait_ms: int = 1000
    max_retry_wait_ms: int = 1_800_000

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def rejected(self) -> str:
        return self.rejected_table or f"{self.table}_rejected"

    @property
    def state(self) -> str:
        return self.state_schema or self.schema


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    input: S3InputConfig | KinesisInputConfig | RegisteredInput
    output: OutputConfig
    filters: tuple[Mapping[str, Any], ...] = ()
    exec: ExecConfig = field(default_factory=ExecConfig)
    path: Path | None = None
    # What a run should say about the config: keys with no effect here, obsolete spellings.
    warnings: tuple[str, ...] = ()

    @property
    def is_stream(self) -> bool:
        return registry.is_stream(self.input)


# --------------------------------------------------------------------------- loading


def load(path: str | Path, *, require_parser: bool = True, environ: Mapping[str, str] | None = None,
         section: Sequence[str] = (), name: str | None = None) -> PipelineConfig:
    """Read, interpolate and validate the config file at ``path``.

    ``section`` is where the config sits in the file when it is not the whole document (a component's
    ``attributes.config`` in its ``defs.yaml``). A ConfigError names the line of the bad key.
    """
    path = Path(path)
    text = read_text(path, os.environ if environ is None else environ)
    raw = select_section(_load_any(text, str(path)), section, str(path))
    try:
        return parse(raw, name=name or _name_from_path(path), path=path, require_parser=require_parser,
                     environ=environ)
    except ConfigError as error:
        line = line_of(text, [*section, *_path_parts(error.path)]) if error.path else None
        if line is None:
            raise
        raise ConfigError(error.path, f"{error.message} ({path}, line {line})") from None


def select_section(document: Any, section: Sequence[str], origin: str) -> dict[str, Any]:
    """The config mapping at ``section`` (keys from the top) of a YAML ``document``; all of it for none."""
    raw = document
    for index, key in enumerate(section):
        raw = raw.get(key) if isinstance(raw, Mapping) else None
        if raw is None:
            raise ConfigError("", f"{origin} has no {'.'.join(section[:index + 1])} mapping")
    if not isinstance(raw, dict):
        where = f"{'.'.join(section)} in {origin}" if section else origin
        raise ConfigError("", f"{where} must be a mapping with 'in' and 'out' keys")
    return raw


def _load_any(text: str, origin: str) -> Any:
    import yaml

    try:
        # libyaml's loader where PyYAML has it: the same safe types, a tenth of the time.
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{origin} is not valid YAML{where}: {getattr(error, 'problem', error)}") from None


def _path_parts(path: str) -> list[str | int]:
    """``in.parser.columns[2].type`` as ``['in', 'parser', 'columns', 2, 'type']``."""
    parts: list[str | int] = []
    for piece in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(piece[1:-1]) if piece.startswith("[") else piece)
    return parts


def line_of(text: str, parts: Sequence[str | int]) -> int | None:
    """The 1-based line of the key at ``parts`` in the YAML ``text``, or of the deepest part of it that exists."""
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in parts:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def read_text(path: Path, environ: Mapping[str, str]) -> str:
    """The config's YAML text: a ``.liquid`` file rendered first, as Embulk renders it, with ``env`` and includes.

    ``{% include 'db/prod' %}`` reads ``db/_prod.yml.liquid`` beside the config (Embulk's partials).
    Unlike Embulk, a variable that is not set is an error naming it, unless ``| default:`` gives one.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"no config file at {path}") from None
    if path.suffix != ".liquid":
        return text
    from liquid import Environment
    from liquid.exceptions import Error as LiquidError
    from liquid.exceptions import TemplateNotFound
    from liquid.loaders import BaseLoader, TemplateSource
    from liquid.undefined import StrictDefaultUndefined

    missing: list[str] = []

    class Partials(BaseLoader):
        def get_source(self, env: Any, template_name: str) -> TemplateSource:
            name = Path(template_name)
            partial = path.parent / name.parent / f"_{name.name}.yml.liquid"
            try:
                return TemplateSource(partial.read_text(encoding="utf-8"), str(partial), None)
            except FileNotFoundError:
                missing.append(f"{{% include '{template_name}' %}} reads {partial}, which does not exist")
                raise TemplateNotFound(template_name) from None

    liquid_env = Environment(loader=Partials(), undefined=StrictDefaultUndefined)
    try:
        return liquid_env.from_string(text).render(env=dict(environ))
    except LiquidError as error:
        raise ConfigError("", f"{path} cannot be rendered as Liquid: {missing[0] if missing else error}") from None


def load_yaml(text: str, origin: str = "<config>") -> dict[str, Any]:
    return select_section(_load_any(text, origin), (), origin)


def parse(
    raw: Mapping[str, Any],
    *,
    name: str = "pipeline",
    path: Path | None = None,
    require_parser: bool = True,
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Validate an already-read config mapping."""
    data = interpolate(raw, os.environ if environ is None else environ)
    top = _Section(data, "")
    name = top.string("name", default=name)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError("name", f"{name!r} must be a simple identifier (letters, digits, underscore)")
    source = _input(top.section("in", required=True), require_parser)
    filters = tuple(top.sequence("filters", default=[]))
    if filters:
        from pipeline.filters import build_filters

        build_filters(list(filters))  # validates, raising ConfigError with the filters[i] path
    exec_config = _exec(top.section("exec", default={}))
    output = _output(top.section("out", required=True), os.environ if environ is None else environ)
    if output.retry_limit is not None and registry.is_stream(source):
        given = next(k for k in ("retry_limit", "retry_wait", "max_retry_wait") if data["out"].get(k) is not None)
        raise ConfigError(f"out.{given}", "retries an object's transaction, and a stream has none: a batch that "
                                          "fails is read again from its checkpoints by the next run (the sensor "
                                          "retries it, exec.retries) or when the continuous job restarts")
    check_mode(exec_config.mode, source)
    if exec_config.min_output_tasks is not None and registry.is_stream(source):
        raise ConfigError("exec.min_output_tasks", "deals one object's pages to several COPY writers, and a stream "
                                                   "has no objects: each batch commits with its shard checkpoints "
                                                   "in one transaction")
    top.done()
    config = PipelineConfig(name=name, input=source, output=output, filters=filters, exec=exec_config, path=path,
                            warnings=tuple(dict.fromkeys(top.notes)))
    check_transport(config, os.environ if environ is None else environ, out_keys=data["out"])
    return config


def aws_endpoint_variables(config: PipelineConfig) -> tuple[str, ...]:
    """The ``AWS_ENDPOINT_URL_<SERVICE>`` variables boto3 reads for the services this pipeline calls."""
    services = list(registry.input_kind(config.input).services)
    if config.output.s3_staging is not None:
        services += [s for s in ("S3", "KMS") if s not in services]
    return tuple(f"AWS_ENDPOINT_URL_{service}" for service in services)


def check_transport(config: PipelineConfig, environ: Mapping[str, str], out_keys: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` when AWS or the warehouse would be reached without TLS (pipeline.transport),
    unless that side says ``allow_insecure: true``.

    ``environ`` is the environment the pipeline will run with (``AWS_ENDPOINT_URL``, ``PGSSLMODE``
    ...); ``out_keys`` are the keys written under ``out``, so the error names the one to change.
    """
    aws = config.input.aws
    if not aws.allow_insecure:
        check_aws(aws.endpoint, [*aws_endpoint_variables(config), "AWS_ENDPOINT_URL"], environ)
    if not config.output.allow_insecure:
        check_warehouse(config.output.conninfo, environ, out_keys)


def interpolate(value: Any, environ: Mapping[str, str], path: str = "") -> Any:
    """Replace ``{{ env.NAME }}`` and ``${NAME}`` in every string of ``value``."""
    if isinstance(value, str):
        return _interpolate_string(value, environ, path)
    if isinstance(value, Mapping):
        return {k: interpolate(v, environ, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def unset_variables(text: str, environ: Mapping[str, str]) -> set[str]:
    """Variables a config's text names without a default that ``environ`` lacks."""
    names = {m.group(1) for m in _LIQUID.finditer(text) if m.group(3) is None}
    names |= {m.group(1) for m in _SHELL.finditer(text) if m.group(2) is None}
    return {name for name in names if name not in environ}


def sole_variable(value: object) -> str | None:
    """The variable a value is made of entirely (``'{{ env.HOLOGRES_URL }}'``), else None."""
    if not isinstance(value, str):
        return None
    for pattern in (_LIQUID, _SHELL):
        match = pattern.fullmatch(value.strip())
        if match:
            return match.group(1)
    return None


def _interpolate_string(text: str, environ: Mapping[str, str], path: str) -> str:
    def replace(match: re.Match[str], default_group: int) -> str:
        name = match.group(1)
        if name in environ:
            return environ[name]
        default = match.group(default_group)
        if default is not None:
            return default
        raise ConfigError(path, f"environment variable {name} is not set")

    text = _LIQUID.sub(lambda m: replace(m, 3), text)
    return _SHELL.sub(lambda m: replace(m, 2), text)


def _retries(section: _Section) -> dict[str, Any]:
    """Embulk's output retry keys; any of them set turns on the retry of lost connections (Embulk's defaults)."""
    if all(section.get(key) is None for key in ("retry_limit", "retry_wait", "max_retry_wait")):
        return {}
    retries = {"retry_limit": section.integer("retry_limit", 12),
               "retry_wait_ms": section.integer("retry_wait", 1000),
               "max_retry_wait_ms": section.integer("max_retry_wait", 1_800_000)}
    if retries["max_retry_wait_ms"] < retries["retry_wait_ms"]:
        raise ConfigError(section.at("max_retry_wait"), f"must be at least retry_wait ({retries['retry_wait_ms']} "
                                                        f"ms), got {retries['max_retry_wait_ms']}")
    return retries


def parse_duration(value: object, where: str) -> float:
    """A duration (``90s``, ``15m``, ``2h``, ``1d`` or seconds) given outside a config; ``where`` names it."""
    parent, _, key = where.rpartition(".")
    return _Section({key: value}, parent).duration(key, None)


def _name_from_path(path: Path) -> str:
    return identifier(path.name.split(".")[0])


def identifier(text: str) -> str:
    """``text`` as a pipeline name: letters, digits and underscores (a file's or a folder's name)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text) or "pipeline"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------- sections


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class _Section:
    """A mapping being validated; remembers which keys were read so unknown ones are reported.

    Readers are named for YAML's kinds (string, integer, ...), not Python's types: a method named ``str``
    would be what ``str`` means in the annotations of the class body.
    """

    def __init__(self, data: Any, path: str, notes: list[str] | None = None):
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"must be a mapping, got {type(data).__name__}")
        self.data = data
        self.path = path
        self.seen: set[str] = set()
        self.notes: list[str] = [] if notes is None else notes  # warnings, shared by a config's sections

    def warn(self, key: str, message: str) -> None:
        self.notes.append(f"config {self.at(key)}: {message}")

    def given_null(self, key: str) -> bool:
        """True when ``key`` is written with no value (YAML null), which some Embulk keys give a meaning."""
        self.seen.add(key)
        return key in self.data and self.data[key] is None

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        self.seen.add(key)
        value = self.data.get(key)
        if value is None:
            if required:
                raise ConfigError(self.at(key), "is required")
            return default
        return value

    def string(self, key: str, default: str | None = None, *, required: bool = False,
            choices: tuple[str, ...] | None = None) -> Any:
        value = self.get(key, default, required=required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(self.at(key), f"must be a string, got {type(value).__name__}")
        value = str(value)
        if choices is not None and value not in choices:
            raise ConfigError(self.at(key), f"{value!r} is not one of {', '.join(choices)}")
        return value

    def char(self, key: str, default: str | None) -> str | None:
        value = self.string(key, default)
        if value is None or value == "":
            return None
        if len(value) != 1:
            raise ConfigError(self.at(key), f"must be a single character, got {value!r}")
        return value

    def integer(self, key: str, default: int | None = None, *, required: bool = False, minimum: int = 0) -> Any:
        value = self.get(key, default, required=required)
        if value is None:
            return None
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.at(key), f"must be a whole number, got {value!r}")
        if value < minimum:
            raise ConfigError(self.at(key), f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float | None = None, *, minimum: float = 0.0) -> Any:
        value = self.get(key, default)
        if value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(self.at(key), f"must be a number, got {value!r}") from None
        if isinstance(value, bool) or number < minimum:
            raise ConfigError(self.at(key), f"must be a number of at least {minimum}, got {value!r}")
        return number

    def duration(self, key: str, default: float | None, *, minimum: float = 0.0) -> Any:
        """Seconds: a number, or a number with a unit, s, m, h or d (``90s``, ``15m``, ``2h``, ``1d``)."""
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool):
            raise ConfigError(self.at(key), f"must be a duration such as 90s, 15m, 2h or 1d, got {value!r}")
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
            if match is None:
                raise ConfigError(self.at(key), f"must be a duration such as 90s, 15m, 2h or 1d, got {value!r}")
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        if seconds < minimum:
            raise ConfigError(self.at(key), f"must be at least {minimum:g} seconds, got {value!r}")
        return seconds

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(self.at(key), f"must be true or false, got {value!r}")
        return value

    def sequence(self, key: str, default: list | None = None, *, required: bool = False) -> Any:
        value = self.get(key, default, required=required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise ConfigError(self.at(key), f"must be a list, got {type(value).__name__}")
        return value

    def names(self, key: str) -> tuple[str, ...]:
        """A column list given as a YAML list or a comma-separated string."""
        value = self.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(self.at(key), "must be a list of column names")
        return tuple(value)

    def section(self, key: str, default: Any = None, *, required: bool = False) -> _Section:
        value = self.get(key, default, required=required)
        return _Section(value, self.at(key), self.notes)

    def item(self, value: Any, path: str) -> _Section:
        """A mapping inside this section's lists or mappings, sharing its warnings."""
        return _Section(value, path, self.notes)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.get(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(self.at(key), f"must be a mapping, got {type(value).__name__}")
        return dict(value)

    def done(self, *, no_effect: Mapping[str, str] | None = None, refused: Mapping[str, str] | None = None) -> None:
        """Refuse keys nobody read (``refused`` ones with what to do instead); warn about ``no_effect`` keys
        (Embulk tuning knobs), saying what happens instead."""
        for key, why in (refused or {}).items():
            if key in self.data:
                raise ConfigError(self.at(key), f"is not supported here: {why}")
        for key, why in (no_effect or {}).items():
            if key in self.data:
                self.seen.add(key)
                self.warn(key, f"has no effect here: {why}")
        unknown = [k for k in self.data if k not in self.seen]
        if unknown:
            expected = ", ".join(sorted(self.seen))
            raise ConfigError(self.at(str(unknown[0])), f"unknown key (expected one of: {expected})")


# --------------------------------------------------------------------------- in


AUTH_METHODS = ("basic", "env", "instance", "profile", "anonymous", "session", "assume_role", "default")
# The keys each auth_method takes besides the common ones (Embulk refuses the others: "Invalid option is set").
_AUTH_KEYS = {
    "basic": ("access_key_id", "secret_access_key"),
    "session": ("access_key_id", "secret_access_key", "session_token"),
    "profile": ("profile_name", "profile_file"),
    "assume_role": ("account_id", "role_name", "external_id", "duration_in_seconds", "session_name", "arn_partition"),
}
_ALL_AUTH_KEYS = sorted({key for keys in _AUTH_KEYS.values() for key in keys})


def _aws(section: _Section) -> AwsSettings:
    auth_method = section.string("auth_method", "basic" if section.has("access_key_id") else "default",
                              choices=AUTH_METHODS)
    allowed = _AUTH_KEYS.get(auth_method, ())
    for key in _ALL_AUTH_KEYS:
        if section.has(key) and key not in allowed:
            raise ConfigError(section.at(key), f"is not an option of auth_method {auth_method}, as in Embulk"
                                               + (f" (it takes {', '.join(allowed)})" if allowed else ""))
    if auth_method == "basic" and not section.has("access_key_id") and not section.has("secret_access_key"):
        section.warn("auth_method", "basic without access_key_id and secret_access_key: requests are anonymous, "
                                    "as in Embulk (auth_method: default uses the AWS credential chain)")
        auth_method = "anonymous"
    role_arn = None
    if auth_method == "assume_role":
        account = section.string("account_id", required=True)
        role = section.string("role_name", required=True)
        role_arn = f"arn:{section.string('arn_partition', 'aws')}:iam::{account}:role/{role}"
    settings = AwsSettings(
        endpoint=section.string("endpoint"),
        region=section.string("region"),
        access_key_id=section.string("access_key_id"),
        secret_access_key=section.string("secret_access_key"),
        session_token=section.string("session_token"),
        allow_insecure=section.boolean("allow_insecure", False),
        auth_method=auth_method,
        profile_name=section.string("profile_name", "default") if auth_method == "profile" else None,
        profile_file=section.string("profile_file"),
        role_arn=role_arn,
        external_id=section.string("external_id"),
        duration_in_seconds=section.integer("duration_in_seconds", 3600, minimum=900),
        session_name=section.string("session_name", "embulk"),
        path_style_access=section.boolean("path_style_access", False),
        maximum_retries=section.integer("maximum_retries", 7, minimum=0),
    )
    if auth_method == "basic" and (settings.access_key_id is None) != (settings.secret_access_key is None):
        missing = "secret_access_key" if settings.secret_access_key is None else "access_key_id"
        raise ConfigError(section.at(missing), "is required when the other AWS key is given")
    if auth_method == "session":
        for key in ("access_key_id", "secret_access_key", "session_token"):
            section.get(key, required=True)
    if settings.endpoint and not re.match(r"https?://", settings.endpoint):
        raise ConfigError(section.at("endpoint"), f"must be an http(s):// URL, got {settings.endpoint!r}")
    return settings


def _input(section: _Section, require_parser: bool) -> Any:
    kind = section.string("type", required=True, choices=tuple(registry.INPUTS))
    if kind in registry.source_types():
        return registry.source_module(kind).configure(section, require_parser, parser=_parser, aws=AwsSettings())
    aws = _aws(section)
    if kind == "s3":
        pattern = section.string("path_match_pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(section.at("path_match_pattern"), f"is not a valid regex: {error}") from None
        path = section.string("path")
        if path is None and section.get("path_prefix") is None:
            raise ConfigError(section.at("path_prefix"), "is required (or path, for one object), as in Embulk")
        use_modified_time = section.boolean("use_modified_time", False)
        last_modified_time = _modified_time(section) if use_modified_time else None
        if not use_modified_time and section.has("last_modified_time"):
            raise ConfigError(section.at("last_modified_time"), "applies only with use_modified_time: true")
        if use_modified_time and last_modified_time is None:
            section.warn("use_modified_time", "without last_modified_time every object is listed, as in Embulk's "
                                              "first run; the ledger, not a config diff, remembers what loaded")
        config = S3InputConfig(
            bucket=section.string("bucket", required=True),
            # Embulk's path (one object) wins over path_prefix.
            path_prefix=path if path is not None else section.string("path_prefix", default=""),
            aws=aws,
            path_match_pattern=pattern,
            total_file_count_limit=section.integer("total_file_count_limit", minimum=1),
            parser=_parser(section, require_parser),
            incremental=section.boolean("incremental", True),
            path=path,
            # With use_modified_time, Embulk lists by modification time and leaves last_path aside.
            last_path=None if use_modified_time or path is not None else section.string("last_path"),
            last_modified_time=last_modified_time,
            skip_glacier_objects=section.boolean("skip_glacier_objects", False),
            notifications=_notifications(section),
        )
        if (use_modified_time or path is not None) and section.has("last_path"):
            section.get("last_path")
            section.warn("last_path", "is not used with " + ("use_modified_time: true" if use_modified_time
                                                               else "path (one object)") + ", as in Embulk")
        check_decoders(section)
        backoff = "botocore's standard retry mode spaces the attempts (exponential, with jitter)"
        section.done(
            no_effect={"min_task_size": "each object is one task, loaded in one COPY",
                       "initial_retry_interval_millis": backoff, "maximum_retry_interval_millis": backoff},
            refused={"http_proxy": "set HTTPS_PROXY (and NO_PROXY) in the environment, which botocore reads"})
        return config
    starting = section.string("starting_position", "trim_horizon", choices=STARTING_POSITIONS)
    timestamp = section.string("timestamp")
    if starting == "at_timestamp" and timestamp is None:
        raise ConfigError(section.at("timestamp"), "is required when starting_position is at_timestamp")
    kinesis = KinesisInputConfig(
        stream=section.string("stream", required=True),
        aws=aws,
        starting_position=starting,
        timestamp=timestamp,
        parser=_json_parser(section),
        on_data_loss=section.string("on_data_loss", "fail", choices=("fail", "warn")),
        on_stream_recreated=section.string("on_stream_recreated", "fail", choices=("fail", "restart")),
    )
    section.done()
    return kinesis


def _notifications(parent: _Section) -> NotificationsConfig | None:
    if not parent.has("notifications"):
        parent.get("notifications")
        return None
    if not isinstance(parent.get("notifications"), Mapping):
        raise ConfigError(parent.at("notifications"), "must be a mapping such as {queue: my-bucket-events}")
    section = parent.section("notifications")
    queue = section.string("queue", required=True)
    if "://" in queue and not re.match(r"https?://[^/]+/\d+/[^/]+$", queue):
        raise ConfigError(section.at("queue"), f"must be a queue name or its URL (https://sqs.REGION.amazonaws.com"
                                               f"/ACCOUNT/NAME), got {queue!r}")
    config = NotificationsConfig(queue=queue, sweep_interval=section.duration("sweep_interval", 300.0, minimum=5.0))
    section.done()
    return config


def _modified_time(section: _Section) -> datetime | None:
    """Embulk's last_modified_time, yyyy-MM-dd'T'HH:mm:ss.SSS'Z' (read as UTC here; Embulk uses the JVM's zone)."""
    value = section.string("last_modified_time")
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(section.at("last_modified_time"), f"must be like 2024-01-31T23:59:59.000Z, got {value!r}") \
            from None


def _parser(parent: _Section, require_parser: bool) -> Any:
    """``in.parser``, read by the module its ``type`` names (pipeline.registry)."""
    if not parent.has("parser"):
        parent.get("parser")
        if require_parser:
            raise ConfigError(parent.at("parser"), "is required; run `pipeline guess` to fill it in")
        return None
    section = parent.section("parser")
    kind = section.string("type", "csv", choices=registry.parser_types())
    return registry.parser_module(kind).configure(section, require_parser, _columns)


def _json_parser(parent: _Section) -> JsonParserConfig:
    section = parent.section("parser", default={})
    section.string("type", "json", choices=("json", "jsonl"))
    config = JsonParserConfig(
        columns=_columns(section, require=True),
        stop_on_invalid_record=section.boolean("stop_on_invalid_record", False),
        max_record_bytes=section.integer("max_record_bytes", 1 << 20, minimum=1),
    )
    section.done()
    return config


def _columns(section: _Section, *, require: bool) -> tuple[Column, ...]:
    """``columns``, with the parser's ``default_timezone`` and ``default_date`` for timestamps without their own."""
    default_zone = _zone(section, "default_timezone", "UTC")
    default_date = _date(section, "default_date", "1970-01-01")
    # Without it a timestamp column with no format of its own reads ISO 8601 (Embulk: %Y-%m-%d %H:%M:%S.%N %z).
    default_format = section.string("default_timestamp_format")
    items = section.sequence("columns", default=[])
    if require and not items:
        raise ConfigError(section.at("columns"), "must list at least one column")
    columns = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        column = section.item(item, f"{section.at('columns')}[{index}]")
        name = column.string("name", required=True)
        kind = column.string("type", "string", choices=COLUMN_TYPES)
        fmt = column.string("format")
        if fmt is not None and kind != "timestamp":
            raise ConfigError(column.at("format"), "only timestamp columns take a format")
        if fmt is None and kind == "timestamp":
            fmt = default_format
        if fmt is not None:
            from pipeline.formats.types import compile_timestamp_format

            try:
                compile_timestamp_format(fmt)
            except ValueError as error:
                raise ConfigError(column.at("format") if column.has("format") else section.at(
                    "default_timestamp_format"), str(error)) from None
        if name in seen:
            raise ConfigError(column.at("name"), f"duplicate column name {name!r}")
        seen.add(name)
        zone = _zone(column, "timezone", default_zone)
        date = _date(column, "date", default_date)
        if kind != "timestamp":
            for key in ("timezone", "date"):
                if column.has(key):
                    raise ConfigError(column.at(key), "only timestamp columns take a timezone or a date")
        column.done()
        columns.append(Column(name=name, type=kind, format=fmt, timezone=zone, date=date))
    return tuple(columns)


def _zone(section: _Section, key: str, default: str) -> str:
    from pipeline.formats.types import check_zone

    zone = section.string(key, default)
    try:
        check_zone(zone)
    except ValueError:
        raise ConfigError(section.at(key), f"unknown time zone {zone!r} (use UTC, an offset such as +09:00, or an "
                                           "IANA name such as Asia/Tokyo)") from None
    return zone


def _date(section: _Section, key: str, default: str) -> str:
    value = section.string(key, default)
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ConfigError(section.at(key), f"must be a date as YYYY-MM-DD, got {value!r}")
    return value


# --------------------------------------------------------------------------- exec


GUESS_PLUGINS = ("csv", "gzip", "bzip2", "csv_all_strings")  # the first three always run, as in Embulk


def _guess_plugins(section: _Section) -> tuple[str, ...]:
    plugins = section.sequence("guess_plugins", default=[])
    for index, name in enumerate(plugins):
        if name not in GUESS_PLUGINS:
            raise ConfigError(f"{section.at('guess_plugins')}[{index}]",
                              f"{name!r} is not a guess plugin here (known: {', '.join(GUESS_PLUGINS)})")
    return tuple(plugins)


def check_mode(mode: str, source: S3InputConfig | KinesisInputConfig | RegisteredInput, given: str = "") -> None:
    """Refuse an ``exec.mode`` the input cannot run in; ``given`` says where a mode from elsewhere came from."""
    if mode not in EXEC_MODES:
        raise ConfigError("exec.mode", f"{mode!r}{given} is not one of {', '.join(EXEC_MODES)}")
    if mode == "continuous" and not registry.is_stream(source) and registry.notifications(source) is None:
        raise ConfigError("exec.mode", f"continuous{given}, for objects, keeps one run that follows the bucket's "
                                       "event notifications: set in.notifications.queue on an S3 input (or leave "
                                       "exec.mode unset: a run per new object)")


def _exec(section: _Section) -> ExecConfig:
    config = ExecConfig(
        mode=section.string("mode", "micro_batch", choices=EXEC_MODES),
        max_threads=section.integer("max_threads", 4, minimum=1),
        window_seconds=section.number("window_seconds", 0.5, minimum=0.05),
        max_records=section.integer("max_records", 100_000, minimum=1),
        max_bytes=section.integer("max_bytes", 64 << 20, minimum=1024),
        max_runtime=section.number("max_runtime", None, minimum=0.0),
        expect_within=section.duration("expect_within", None, minimum=1.0),
        retries=section.integer("retries", 5, minimum=0),
        retry_wait=section.duration("retry_wait", 60.0, minimum=0.0),
        guess_plugins=_guess_plugins(section),
        min_output_tasks=section.integer("min_output_tasks", None, minimum=1),
    )
    section.string("type", "local", choices=("local",))  # Embulk's executor: this is the local one
    section.done()
    return config


# --------------------------------------------------------------------------- out


def _output(section: _Section, environ: Mapping[str, str]) -> OutputConfig:
    kind = section.string("type", required=True, choices=OUTPUT_TYPES)
    conninfo = _conninfo(section, kind, environ)
    schema, table = _table(section)
    mode = section.string("mode", "append" if kind == "redshift" else "insert_direct", choices=(*MODES, "merge_direct"))
    if mode == "merge_direct":
        section.warn("mode", "merge_direct loads as merge: the same rows, each object in one transaction")
        mode = "merge"
    # Timestamps are written as instants, the session in UTC.
    section.string("default_timezone", "UTC", choices=("UTC",))
    merge_keys = section.names("merge_keys")
    primary_key = section.names("primary_key")
    column_options = {}
    for column, options in section.mapping("column_options").items():
        sub = section.item(options, f"{section.at('column_options')}.{column}")
        column_options[str(column)] = sub.string("type", required=True)
        # The server casts each value from its text (Embulk's value_type coerce), in the session's zone, UTC.
        sub.string("value_type", "coerce", choices=("coerce",))
        sub.string("timezone", "UTC", choices=("UTC",))
        if sub.has("timestamp_format"):
            raise ConfigError(sub.at("timestamp_format"), "applies to Embulk's value_type string, which is not "
                                                         "supported: the server casts each value from its text")
        sub.done()
    properties = section.mapping("table_properties")
    for key in properties:
        if key not in HOLOGRES_TABLE_PROPERTIES:
            raise ConfigError(f"{section.at('table_properties')}.{key}",
                              f"unknown Hologres table property (known: {', '.join(HOLOGRES_TABLE_PROPERTIES)})")
    if properties and kind != "hologres":
        raise ConfigError(section.at("table_properties"), "table_properties apply only to out.type hologres")
    distkey = section.string("distkey")
    sortkey = section.names("sortkey")
    if (distkey or sortkey) and kind != "redshift":
        raise ConfigError(section.at("distkey" if distkey else "sortkey"), "applies only to out.type redshift")
    staging = None
    if section.has("s3_staging"):
        sub = section.section("s3_staging")
        staging = S3StagingConfig(
            bucket=sub.string("bucket", required=True),
            prefix=sub.string("prefix", "pipeline-staging/"),
            sse_kms_key_id=sub.string("sse_kms_key_id"),
            format=sub.string("format", "json", choices=("json", "csv")),
        )
        sub.done()
    config = OutputConfig(
        type=kind,
        conninfo=conninfo,
        schema=schema,
        table=table,
        mode=mode,
        merge_keys=merge_keys,
        primary_key=primary_key,
        create_table=section.boolean("create_table", True),
        column_options=column_options,
        table_properties=properties,
        distkey=distkey,
        sortkey=sortkey,
        s3_staging=staging,
        iam_role=section.string("iam_role"),
        rejected_table=section.string("rejected_table"),
        state_schema=section.string("state_schema"),
        allow_insecure=section.boolean("allow_insecure", False),
        truncate_columns=section.boolean("truncate_columns", False),
        **_retries(section),
    )
    section.done(no_effect={
        "batch_size": "rows stream to the server in one COPY per object, so there is no batch to size",
        "socket_timeout": "libpq has no read timeout; long statements end by the server's statement_timeout",
    }, refused={
        "merge_rule": "merge updates every column but the merge keys from the new row",
        "before_load": "run SQL around loads from a Dagster asset or job of your own",
        "after_load": "run SQL around loads from a Dagster asset or job of your own",
        "create_table_constraint": "write the table yourself (out.create_table: false) or use column_options",
        "create_table_option": "write the table yourself (out.create_table: false), or table_properties on Hologres",
        "role": "give the connecting user the privileges, or SET ROLE in the user's defaults (ALTER ROLE ... SET role)",
        "transaction_isolation": "each load runs in the dialect's own transaction (read committed)",
        "temp_schema": "staging tables are created beside the target table",
        "ssl_mode": "write sslmode in out.url or as out.sslmode (libpq's names)",
    })
    return config


def _conninfo(section: _Section, kind: str, environ: Mapping[str, str]) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = section.string("url")
    params: dict[str, Any] = {}
    for key in ("host", "port", "user", "password", "database", "sslmode", "connect_timeout"):
        value = section.string(key)
        if value is not None:
            params["dbname" if key == "database" else key] = value
    if section.has("ssl"):  # embulk-output-postgresql: true/enable, verify, false/disable
        ssl = str(section.get("ssl")).lower()
        modes = {"true": "require", "enable": "require", "verify": "verify-full", "false": "disable",
                 "disable": "disable"}
        if ssl not in modes:
            raise ConfigError(section.at("ssl"), f"must be enable, verify or disable, got {ssl!r}")
        params["sslmode"] = modes[ssl]
    params.update(_jdbc_options(section))
    if url is None and "host" not in params:
        raise ConfigError(section.at("url"), "is required (or give host, port, user, password and database)")
    try:
        base = conninfo_to_dict(url) if url else {}
    except Exception as error:  # psycopg raises ProgrammingError for a malformed URL
        # libpq quotes the URL, password included: keep its reason, up to the first quote.
        reason = str(error).strip().splitlines()[0].split('"')[0].rstrip(" :")
        raise ConfigError(section.at("url"), f"is not a valid PostgreSQL URL ({reason}); percent-encode "
                                             "@ : / # ? % in the user or password, e.g. %40 for @") from None
    base.update(params)
    if "@" in str(base.get("host", "")):
        # An unencoded @ in the password splits the URL in the wrong place; never echo the pieces.
        raise ConfigError(section.at("url"), "has an unencoded @ in the user or password; percent-encode it as %40")
    if "sslmode" not in base and "PGSSLMODE" not in environ and not _local_hosts(str(base.get("host", ""))):
        # Secure by default: a remote warehouse with no sslmode gets TLS rather than libpq's plaintext fallback.
        base["sslmode"] = "require"
    base.setdefault("port", "5439" if kind == "redshift" else "5432")
    base.setdefault("connect_timeout", "10")
    base.setdefault("application_name", "pipeline")
    return make_conninfo(**{k: str(v) for k, v in base.items()})


# Embulk's out.options are JDBC connection properties; these have a libpq parameter of the same meaning.
_JDBC_OPTIONS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "loginTimeout": ("connect_timeout", lambda v: str(int(float(v)))),
    "connectTimeout": ("connect_timeout", lambda v: str(int(float(v)))),
    "tcpKeepAlive": ("keepalives", lambda v: "1" if str(v).lower() == "true" else "0"),
    "ApplicationName": ("application_name", str),
    "sslmode": ("sslmode", str),
    "ssl": ("sslmode", lambda v: "require" if str(v).lower() == "true" else "disable"),
    "sslrootcert": ("sslrootcert", str),
    "sslcert": ("sslcert", str),
    "sslkey": ("sslkey", str),
    "options": ("options", str),
}


def _jdbc_options(section: _Section) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in section.mapping("options").items():
        if key not in _JDBC_OPTIONS:
            raise ConfigError(f"{section.at('options')}.{key}", "has no libpq equivalent here (known: "
                                                                f"{', '.join(_JDBC_OPTIONS)}); put libpq parameters "
                                                                "in out.url, e.g. ?keepalives_idle=30")
        name, convert = _JDBC_OPTIONS[key]
        try:
            params[name] = convert(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{section.at('options')}.{key}", f"cannot be {value!r}") from None
    return params


def _local_hosts(hosts: str) -> bool:
    """True when every host is a Unix socket directory or on the loopback interface."""
    return all(h.startswith("/") or is_loopback(h) for h in hosts.split(",")) if hosts else True


def _table(section: _Section) -> tuple[str, str]:
    table = section.string("table", required=True)
    schema = section.string("schema")
    parts = table.split(".")
    if len(parts) == 2 and schema is None:
        schema, table = parts
    elif len(parts) != 1:
        raise ConfigError(section.at("table"), f"{table!r} must be TABLE or SCHEMA.TABLE")
    if not table or (not schema and schema is not None):
        raise ConfigError(section.at("table"), "table and schema names must not be empty")
    return schema or "public", table
