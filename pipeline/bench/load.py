"""Bulk load of book_order CSV from S3, next to the floor (``psql \\copy`` from local disk).

Every path loads the same bytes into the same freshly created table (text primary key), after a
CHECKPOINT, and the paths take turns round by round so a busy moment of the machine hits them
alike; the best round of each is compared. Then the tutorial-sized load, where start-up is
most of the time: end to end, warm, and the load itself after start-up.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from pipeline.bench.harness import SEED, Bench, BenchError, psql_binary, run_pipeline
from pipeline.bench.results import Figure, Section, best, median, timings

EMBULK_TUTORIAL_SECONDS = 0.20  # `embulk run` of the 10,000-row tutorial file, as its log reports
SMALL_LOAD_TARGET_SECONDS = 0.1
RUN_TIME_TARGET = 1.15  # `pipeline run` of the 1M-row object, end to end, against psql \copy of the same file
FLOOR = "psql \\copy from local disk (the floor)"


class BookOrderLoads:
    """The ways of loading one book_order file of ``rows`` rows into ``public.<table>``."""

    def __init__(self, bench: Bench, rows: int, table: str):
        self.bench = bench
        self.rows = rows
        self.table = table
        self.prefix = bench.prefix(f"load-{rows}")
        self.local_file = bench.workdir / f"book_order_{rows}.csv"
        self.plain_key = f"{self.prefix}plain/book_order.csv"
        self.kms_key = f"{self.prefix}kms/book_order.csv"
        # The same rows with every field quoted: the fast path's guard has a quote to judge in each field.
        self.quoted_file = bench.workdir / f"book_order_{rows}_quoted.csv"
        self.quoted_key = f"{self.prefix}quoted/book_order.csv"
        self.bytes = 0
        self.runs = 0
        self.runs_of_dlt = 0
        self.sling_refused: str | None = None  # why sling cannot load through the Hologres stand-in

    def prepare(self) -> None:
        from pipeline.generate import generate_books, write_books

        with self.local_file.open("wb") as file:
            for chunk in generate_books(self.rows, seed=SEED):
                file.write(chunk)
        self.bytes = self.local_file.stat().st_size
        write_books(self.rows, f"s3://{self.bench.bucket}/{self.plain_key}", seed=SEED, client=self.bench.s3)
        write_books(self.rows, f"s3://{self.bench.bucket}/{self.kms_key}", seed=SEED, client=self.bench.s3,
                    sse_kms_key_id=self.bench.kms_key)
        with self.local_file.open("rb") as plain, self.quoted_file.open("wb") as quoted:
            for line in plain:
                fields = line.rstrip(b"\n").split(b",")
                quoted.write(b",".join(b'"' + field.replace(b'"', b'""') + b'"' for field in fields) + b"\n")
        from boto3.s3.inject import upload_file

        upload_file(self.bench.s3, str(self.quoted_file), self.bench.bucket, self.quoted_key)
        head = self.bench.s3.head_object(Bucket=self.bench.bucket, Key=self.kms_key)
        if head.get("ServerSideEncryption") != "aws:kms":
            raise BenchError(f"s3://{self.bench.bucket}/{self.kms_key} was not stored with SSE-KMS")
        self.bench.on_cleanup(f"s3://{self.bench.bucket}/{self.prefix}", lambda: self.bench.delete_prefix(self.prefix))

    # ----------------------------------------------------------------- the paths, each timed alone

    def timed(self, load: Callable[[], None], what: str, conninfo: str | None = None) -> float:
        conninfo = conninfo or self.bench.hologres_url
        self.bench.recreate_book_order(self.table, conninfo=conninfo)
        started = time.perf_counter()
        load()
        seconds = time.perf_counter() - started
        self.bench.expect_rows(conninfo, "public", self.table, self.rows, what)
        return seconds

    def psql(self, quoted: bool = False, conninfo: str | None = None) -> float:
        """psql's client-side COPY of the local file: no S3, no Python, the server parses the CSV."""
        command = (f"\\copy public.{self.table} FROM '{self.quoted_file if quoted else self.local_file}' "
                   "WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')")
        conninfo = conninfo or self.bench.hologres_url

        def load() -> None:
            result = subprocess.run([psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                                     conninfo, "-c", command],
                                    capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise BenchError(f"psql \\copy failed: {result.stderr.strip()}")

        return self.timed(load, "psql \\copy", conninfo)

    def scattered(self, writers: int) -> float:
        """BatchLoad into plain PostgreSQL, exec.min_output_tasks ``writers``: the pages dealt to that many COPYs."""
        from pipeline import config as config_module
        from pipeline.batch import BatchLoad

        loaded: list = []
        self.runs += 1
        name = self.bench.name(f"load_{self.rows}_scatter{writers}_{self.runs}")
        path = self.bench.book_order_config(name, f"{self.prefix}plain/", self.table, target="postgresql",
                                            output_tasks=writers)

        def load() -> None:
            loaded.extend(BatchLoad(config_module.load(path), emit=lambda _: None).run().loaded)

        seconds = self.timed(load, f"BatchLoad (PostgreSQL, min_output_tasks {writers})", self.bench.postgresql_url)
        how = [(r.path, r.writers) for r in loaded]
        if how != [("fast", writers)]:
            raise BenchError(f"BatchLoad with min_output_tasks {writers} loaded (path, writers) {how}")
        return seconds

    def config(self, encrypted: bool, *, threads: int = 1, quoted: bool = False) -> Path:
        """A fresh pipeline name for each run, so the ledger never says 'already loaded'."""
        self.runs += 1
        kind = "quoted" if quoted else "kms" if encrypted else "plain"
        name = self.bench.name(f"load_{self.rows}_{kind}_{self.runs}")
        return self.bench.book_order_config(name, f"{self.prefix}{kind}/", self.table, threads=threads)

    def ours(self, encrypted: bool, s3_client: object | None = None, *, quoted: bool = False) -> float:
        """BatchLoad in this process, as `pipeline run` calls it (it makes its own S3 client unless given one)."""
        from pipeline import config as config_module
        from pipeline.batch import BatchLoad

        loaded: list = []

        def load() -> None:
            config = config_module.load(self.config(encrypted, quoted=quoted))
            summary = BatchLoad(config, s3_client=s3_client, emit=lambda _: None).run()
            loaded.extend(summary.loaded)

        kind = "every field quoted" if quoted else "SSE-KMS" if encrypted else "plaintext"
        seconds = self.timed(load, f"BatchLoad ({kind})")
        if [r.path for r in loaded] != ["fast"]:
            raise BenchError(f"BatchLoad did not take the fast path: {[r.path for r in loaded]}")
        return seconds

    def ours_merge(self) -> float:
        """BatchLoad in mode merge: on Hologres, fixed copy (STREAM_MODE TRUE, ON_CONFLICT 'update')."""
        from pipeline import config as config_module
        from pipeline.batch import BatchLoad

        def load() -> None:
            path = self.config(False)
            config = config_module.load(path)
            config = dataclasses.replace(config, output=dataclasses.replace(config.output, mode="merge"))
            BatchLoad(config, emit=lambda _: None).run()

        return self.timed(load, "BatchLoad (merge, fixed copy)")

    def ours_redshift(self) -> float:
        """BatchLoad into the Redshift stand-in: COPY FROM S3 of the object itself, through a manifest."""
        from pipeline import config as config_module
        from pipeline.batch import BatchLoad

        self.runs += 1
        name = self.bench.name(f"load_{self.rows}_redshift_{self.runs}")
        path = self.bench.book_order_config(name, f"{self.prefix}plain/", self.table, target="redshift")
        with psycopg.connect(self.bench.redshift_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("public", self.table)))
        self.bench.checkpoint(self.bench.redshift_url)
        started = time.perf_counter()
        summary = BatchLoad(config_module.load(path), emit=lambda _: None).run()
        seconds = time.perf_counter() - started
        self.bench.expect_rows(self.bench.redshift_url, "public", self.table, self.rows, "BatchLoad (Redshift)")
        if [r.path for r in summary.loaded] != ["fast"]:
            raise BenchError(f"BatchLoad into Redshift did not COPY the object itself: "
                             f"{[r.path for r in summary.loaded]}")
        return seconds

    def pipeline_run(self) -> float:
        """`pipeline run` end to end: interpreter start, imports, S3 client, the load."""
        config = self.config(False)

        def load() -> None:
            child = run_pipeline("run", str(config), env=self.bench.subprocess_env())
            if child.exit_code != 0:
                raise BenchError(f"pipeline run failed ({child.exit_code}): {child.output.strip()[-2000:]}")

        return self.timed(load, "pipeline run")

    def bare(self) -> float:
        """The least a Python loader can do: get_object, and its body straight into COPY."""
        from pipeline.sources.aws import client

        def load() -> None:
            s3 = client("s3")
            statement = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(
                sql.Identifier("public", self.table))
            with psycopg.connect(self.bench.hologres_url) as conn, conn.cursor() as cur:
                body = s3.get_object(Bucket=self.bench.bucket, Key=self.plain_key)["Body"]
                with cur.copy(statement) as copy:
                    for chunk in body.iter_chunks(1 << 20):
                        copy.write(chunk)
                conn.commit()

        return self.timed(load, "bare boto3 + COPY")

    def dlt(self) -> float:
        """dlt's filesystem source into its postgres destination (it makes its own table).

        It reads the object's bytes from local disk, as `psql \\copy` does: dlt reads S3 through s3fs, whose
        aiobotocore pins a botocore older than the boto3 this project needs (the bench extra leaves it out),
        and local disk only spares dlt the network.
        """
        import dlt
        from dlt.sources.filesystem import readers

        dataset = self.bench.name("dlt")

        def load() -> None:
            source = readers(bucket_url=self.local_file.parent.as_uri(), file_glob=self.local_file.name).read_csv()
            pipeline = dlt.pipeline(pipeline_name=dataset, pipelines_dir=str(self.bench.workdir / "dlt"),
                                    destination=dlt.destinations.postgres(credentials=self.bench.hologres_url),
                                    dataset_name=dataset)
            pipeline.run(source.with_name(self.table), write_disposition="replace")

        if self.runs_of_dlt == 0:
            self.bench.on_cleanup(f"schema {dataset}", lambda: _drop_schema(self.bench.hologres_url, dataset))
        self.runs_of_dlt += 1
        _drop_schema(self.bench.hologres_url, dataset)  # a fresh table each round, as the other paths get
        self.bench.checkpoint(self.bench.hologres_url)
        started = time.perf_counter()
        load()
        seconds = time.perf_counter() - started
        self.bench.expect_rows(self.bench.hologres_url, dataset, self.table, self.rows, "dlt")
        return seconds

    def sling(self) -> float:
        """sling's S3 to PostgreSQL copy into the same fresh table (mode truncate keeps its key).

        sling creates its staging table and inserts from it in one transaction, which Hologres refuses (DDL
        and DML never share a transaction; docs/targets.md): through the Hologres stand-in it fails. It is
        then timed on the same database without the stand-in's rules, so its speed still shows, and the
        section says so.
        """
        env = self.bench.env
        source = json.dumps({"type": "s3", "bucket": self.bench.bucket, "endpoint": env["AWS_ENDPOINT_URL"],
                             "access_key_id": env["AWS_ACCESS_KEY_ID"],
                             "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                             "region": env.get("AWS_DEFAULT_REGION", "us-east-1")})

        def load_into(url: str) -> None:
            # sling refuses a URL without sslmode when the server offers no TLS, as the local stack's does not.
            result = subprocess.run(
                [_sling_binary() or "sling", "run", "--src-conn", "BENCH_S3", "--src-stream",
                 f"s3://{self.bench.bucket}/{self.plain_key}", "--tgt-conn", "BENCH_PG",
                 "--tgt-object", f"public.{self.table}", "--mode", "truncate"],
                env={**self.bench.subprocess_env(), "BENCH_S3": source, "BENCH_PG": _with_sslmode(url)},
                capture_output=True, text=True, check=False)
            if result.returncode != 0:
                output = _ANSI.sub("", result.stdout + result.stderr).strip()
                raise BenchError(f"sling failed: {output.splitlines()[-1] if output else result.returncode}")

        if self.sling_refused is None:
            try:
                return self.timed(lambda: load_into(self.bench.hologres_url), "sling")
            except BenchError as error:
                if "in ddl transaction is not supported" not in str(error):
                    raise
                self.sling_refused = str(error)
        direct = self.bench.direct_url(self.bench.hologres_url)
        return self.timed(lambda: load_into(direct), "sling")


def _guard_cost(section: Section, loads: BookOrderLoads) -> None:
    """The fast path's guard alone, over the local files: what being as strict as Embulk costs per row."""
    from pipeline.formats.strict import guard

    for kind, path in (("plain", loads.local_file), ("quoted", loads.quoted_file)):
        data = path.read_bytes()
        chunks = [data[at:at + (1 << 20)] for at in range(0, len(data), 1 << 20)]
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            for _ in guard(chunks, delimiter=",", quote='"', escape="\\", max_quoted_size=131072):
                pass
            samples.append(time.perf_counter() - started)
        seconds = best(samples)
        section.add(Figure(f"load.guard.{kind}", f"the fast path's guard alone, {kind} file, {loads.rows:,} rows "
                           f"({len(data) / 1e6:.0f} MB)", seconds / loads.rows * 1e9, "ns/row",
                           detail={**timings(samples), "mb_per_s": round(len(data) / 1e6 / seconds)}))


def _drop_schema(conninfo: str, schema: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _with_sslmode(url: str) -> str:
    """``url`` with ``sslmode=disable`` unless it names an sslmode (the local stack serves no TLS)."""
    if "sslmode=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}sslmode=disable"


def _sling_binary() -> str | None:
    """The sling executable: the one the sling-linux-amd64 package ships (it names it SLING_BIN), else PATH's."""
    if importlib.util.find_spec("sling_linux_amd64") is not None:
        import sling_linux_amd64

        shipped = getattr(sling_linux_amd64, "SLING_BIN", "")
        if shipped and Path(shipped).is_file():
            return str(shipped)
    return shutil.which("sling")


def _others_available() -> dict[str, str | None]:
    """Which other loaders are installed (the optional `bench` extra); None, or why not."""
    return {
        "dlt": None if importlib.util.find_spec("dlt") else "dlt is not installed",
        "sling": None if _sling_binary() else "sling is not installed (sling-linux-amd64) nor on PATH",
    }


# --------------------------------------------------------------------------- the section


def measure(bench: Bench, section: Section) -> None:
    sizes = bench.sizes
    table = bench.name("book_order")
    # The Redshift path loads the same object there, the scatter paths into plain PostgreSQL.
    for url in (bench.hologres_url, bench.redshift_url, bench.postgresql_url):
        bench.drop_on_cleanup(url, "public", table, f"{table}_rejected")
        bench.forget_state_on_cleanup(url, "public")

    small = BookOrderLoads(bench, sizes.small_rows, table)
    bulk = BookOrderLoads(bench, sizes.rows, table)
    for loads in (small, bulk):
        started = time.perf_counter()
        loads.prepare()
        bench.emit(f"load: wrote {loads.rows:,} rows ({loads.bytes / 1e6:.1f} MB) to disk and to S3 "
                   f"(plaintext and SSE-KMS) in {time.perf_counter() - started:.1f} s")

    _small_load(bench, section, small)
    _bulk_load(bench, section, bulk)


def _small_load(bench: Bench, section: Section, loads: BookOrderLoads) -> None:
    from pipeline.sources.aws import client

    rows = f"{loads.rows:,} rows"
    # Warm-up: the first load of a process pays for imports; the first of a server for its caches.
    loads.psql()
    loads.ours(False)
    samples: dict[str, list[float]] = {"psql": [], "run": [], "ours": [], "after_startup": [], "client": []}
    for _ in range(bench.sizes.small_repeats):
        samples["psql"].append(loads.psql())
        samples["run"].append(loads.pipeline_run())
        samples["ours"].append(loads.ours(False))
        started = time.perf_counter()
        s3 = client("s3")
        samples["client"].append(time.perf_counter() - started)
        samples["after_startup"].append(loads.ours(False, s3_client=s3))
    after = best(samples["after_startup"])
    section.add(Figure("load.small.psql", f"{FLOOR}, {rows}", best(samples["psql"]), "s",
                       detail=timings(samples["psql"])))
    section.add(Figure("load.small.pipeline_run", f"`pipeline run`, end to end (interpreter start included), {rows}",
                       best(samples["run"]), "s", detail=timings(samples["run"])))
    section.add(Figure("load.small.ours", f"BatchLoad.run in a warm process, S3 client made by the run, {rows}",
                       best(samples["ours"]), "s", detail=timings(samples["ours"])))
    section.add(Figure("load.small.s3_client", "of which: creating the boto3 S3 client",
                       best(samples["client"]), "s", detail=timings(samples["client"])))
    section.add(Figure(
        "load.small.after_startup", f"the load itself, after start-up (S3 client ready), {rows}", after, "s",
        ratio=EMBULK_TUTORIAL_SECONDS / after, compared_with=f"Embulk's tutorial run, {EMBULK_TUTORIAL_SECONDS:.2f} s",
        ratio_meaning="as fast as", target=f"< {SMALL_LOAD_TARGET_SECONDS} s",
        meets=after < SMALL_LOAD_TARGET_SECONDS, detail=timings(samples["after_startup"])))
    bench.emit(f"load: {rows}: psql {best(samples['psql']):.3f} s, pipeline run {best(samples['run']):.3f} s, "
               f"BatchLoad {best(samples['ours']):.3f} s, after start-up {after:.3f} s")


def _bulk_load(bench: Bench, section: Section, loads: BookOrderLoads) -> None:
    paths: dict[str, tuple[str, Callable[[], float]]] = {
        "psql": (FLOOR, loads.psql),
        "ours_plain": ("this project (BatchLoad, insert_direct), plaintext object", lambda: loads.ours(False)),
        "ours_kms": ("this project (BatchLoad, insert_direct), SSE-KMS object", lambda: loads.ours(True)),
        "pipeline_run": ("`pipeline run`, end to end as a user times it (interpreter start, listing, table checks, "
                         "the load), plaintext object", loads.pipeline_run),
        "ours_merge": ("this project (BatchLoad, merge: Hologres fixed copy), plaintext object", loads.ours_merge),
        "ours_redshift": ("this project into Redshift (COPY FROM S3 of the object, through a manifest)",
                          loads.ours_redshift),
        "bare": ("bare boto3 get_object into psycopg COPY", loads.bare),
        "psql_postgresql": (f"{FLOOR}, into plain PostgreSQL (out.type postgresql)",
                            lambda: loads.psql(conninfo=bench.postgresql_url)),
        "scatter_1": ("this project into plain PostgreSQL, exec.min_output_tasks 1", lambda: loads.scattered(1)),
        "scatter_2": ("this project into plain PostgreSQL, exec.min_output_tasks 2: pages dealt to 2 COPY writers",
                      lambda: loads.scattered(2)),
        "scatter_4": ("this project into plain PostgreSQL, exec.min_output_tasks 4: pages dealt to 4 COPY writers",
                      lambda: loads.scattered(4)),
        "psql_quoted": (f"{FLOOR}, every field quoted", lambda: loads.psql(quoted=True)),
        "ours_quoted": ("this project (BatchLoad, insert_direct), every field quoted: the guard judges each quote",
                        lambda: loads.ours(False, quoted=True)),
    }
    from pipeline.warehouse.scatter import SCATTER_BYTES_PER_WRITER

    for writers in (2, 4):
        if loads.bytes < writers * SCATTER_BYTES_PER_WRITER:  # --quick sizes: too small to be dealt to them
            del paths[f"scatter_{writers}"]
            section.notes.append(f"min_output_tasks {writers} skipped: a {loads.bytes / 1e6:.0f} MB object gets at "
                                 f"most one writer per {SCATTER_BYTES_PER_WRITER >> 20} MB")
    for name, reason in _others_available().items():
        if reason is None:
            paths[name] = (f"{name}, the same object", getattr(loads, name))
        else:
            section.notes.append(f"{name} skipped: {reason} (install the `bench` extra to compare it)")
    # Warm-up: PostgreSQL creates its WAL segment files on the first big load and recycles them after.
    loads.psql()
    samples: dict[str, list[float]] = {name: [] for name in paths}
    failed: dict[str, str] = {}
    for round_number in range(1, bench.sizes.repeats + 1):
        for name, (_, run) in paths.items():
            if name in failed:
                continue
            try:
                samples[name].append(run())
            except Exception as error:
                if name in ("dlt", "sling"):  # optional comparisons never sink the run
                    failed[name] = str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)
                    section.notes.append(f"{name} failed: {failed[name]}")
                    continue
                raise
        bench.emit(f"load: round {round_number}: " + ", ".join(
            f"{name} {s[-1]:.2f} s" for name, s in samples.items() if s))
    floor = best(samples["psql"])
    mb = loads.bytes / 1e6
    for name, (label, _) in paths.items():
        if not samples[name]:
            continue
        seconds = best(samples[name])
        detail = {**timings(samples[name]), "rows": loads.rows, "object_mb": round(mb, 1),
                  "rows_per_s_median": round(loads.rows / median(samples[name]))}
        figure = Figure(f"load.bulk.{name}", f"{label}, {loads.rows:,} rows ({mb:.0f} MB)",
                        loads.rows / seconds, "rows/s", detail=detail)
        if name.startswith("scatter_") and samples.get("psql_postgresql"):
            plain_floor = best(samples["psql_postgresql"])
            figure.ratio = plain_floor / seconds
            figure.compared_with = f"psql \\copy into the same PostgreSQL, {loads.rows / plain_floor:,.0f} rows/s"
            figure.ratio_meaning = "that floor's rows/s:"
            if name != "scatter_1":
                figure.target = ">= 1.3x"
                figure.meets = figure.ratio >= 1.3
        elif name == "ours_quoted" and samples.get("psql_quoted"):
            quoted_floor = best(samples["psql_quoted"])
            figure.ratio = quoted_floor / seconds
            figure.compared_with = f"psql \\copy of the quoted file, {loads.rows / quoted_floor:,.0f} rows/s"
            figure.ratio_meaning = "that floor's rows/s:"
        elif name not in ("psql", "psql_quoted", "psql_postgresql"):
            figure.ratio = floor / seconds
            figure.compared_with = f"psql \\copy, {loads.rows / floor:,.0f} rows/s"
            figure.ratio_meaning = "the floor's rows/s:"
            if name == "pipeline_run":  # issue 18: at most 1.15x the time of psql \copy
                figure.target = f"time <= {RUN_TIME_TARGET:g}x psql's"
                figure.meets = seconds <= RUN_TIME_TARGET * floor
        section.add(figure)
    _guard_cost(section, loads)
    if samples.get("ours_merge"):
        section.notes.append("merge on the Hologres stand-in is fixed copy as the stand-in emulates it: rows COPY into "
                             "a temporary table, then INSERT ... ON CONFLICT DO UPDATE; its cost is the emulation's, "
                             "not a measure of real Hologres' fixed copy")
    if samples.get("ours_redshift"):
        section.notes.append("the Redshift path is not comparable with the floor: Redshift does not enforce primary "
                             "keys, so its stand-in table has no index for COPY to maintain, and the stand-in reads "
                             "the object from S3 itself; it shows that COPY FROM S3 through a manifest adds no "
                             "client-side cost")
    if samples.get("dlt"):
        section.notes.append("dlt creates its own table (in its own schema, with its _dlt columns and no primary key), "
                             "and reads the object from local disk (its S3 reader needs s3fs, left out of the bench "
                             "extra: see pyproject.toml)")
    if loads.sling_refused:
        section.notes.append(f"sling cannot load into Hologres: {loads.sling_refused} (it inserts from its staging "
                             "table in the transaction that created it, and Hologres runs DDL and DML in separate "
                             "transactions); its figure is the same load into the same database without the "
                             "stand-in's rules, as plain PostgreSQL")
