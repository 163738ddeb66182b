"""What one refused record costs: a batch with one bad record against the same batch clean.

S3: an object of ``refusal_records`` book_order rows into Hologres (insert_direct), clean; with one
book_name longer than its varchar column (found from the column's type, in the checked pass after the
fast path is refused); and with one order_cnt a CHECK constraint refuses (only the server can tell: the
checked pass runs once more without it).

Kinesis: a backlog of as many sensor records with one status longer than varchar(16), read by a pipeline
whose table has status varchar(16) (the record is rejected, the batch commits once) and by one whose table
has varchar(64) (nothing refused), in one batch each.
"""

from __future__ import annotations

import json
import time

from pipeline.bench.harness import SEED, Bench, BenchError
from pipeline.bench.results import Figure, Section, best, timings

TITLE_WIDTH = 200
SCHEMA = "sensor_schema"


def measure(bench: Bench, section: Section) -> None:
    bench.forget_state_on_cleanup(bench.hologres_url, "public")
    bench.forget_state_on_cleanup(bench.redshift_url, SCHEMA)
    _object(bench, section)
    _stream(bench, section)


def _object(bench: Bench, section: Section) -> None:
    from pipeline import config as config_module
    from pipeline.batch import BatchLoad
    from pipeline.generate import generate_books

    rows = bench.sizes.refusal_records
    body = b"".join(generate_books(rows, seed=SEED))
    lines = body.split(b"\n")
    middle = len(lines) // 2
    fields = lines[middle].split(b",")
    variants = {
        "clean": body,
        "one too long": _replace(lines, middle, fields, 3, b"x" * (TITLE_WIDTH + 1)),
        "one check violation": _replace(lines, middle, fields, 4, b"0"),
    }
    expected = {"clean": (rows, 0), "one too long": (rows - 1, 1), "one check violation": (rows - 1, 1)}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    prefix = bench.prefix("refusals")
    bench.on_cleanup(f"objects under s3://{bench.bucket}/{prefix}", lambda: bench.delete_prefix(prefix))
    for name, data in variants.items():
        bench.s3.put_object(Bucket=bench.bucket, Key=f"{prefix}{name.replace(' ', '_')}/orders.csv", Body=data)
    runs = 0
    for _ in range(min(2, bench.sizes.repeats)):
        for name in variants:
            runs += 1
            table = bench.name(f"refusals_{runs}")
            bench.drop_on_cleanup(bench.hologres_url, "public", table, f"{table}_rejected")
            path = bench.book_order_config(table, f"{prefix}{name.replace(' ', '_')}/", table)
            _tune(path, {"book_name": {"type": f"varchar({TITLE_WIDTH})"},
                                   "order_cnt": {"type": "bigint CHECK (order_cnt > 0)"}})
            config = config_module.load(path)
            bench.checkpoint(bench.hologres_url)
            started = time.perf_counter()
            summary = BatchLoad(config, emit=lambda _: None).run()
            samples[name].append(time.perf_counter() - started)
            if (summary.rows, summary.rejected) != expected[name]:
                raise BenchError(f"refusals, {name}: loaded {summary.rows:,} rows and rejected {summary.rejected:,}, "
                                 f"expected {expected[name][0]:,} and {expected[name][1]:,}")
    clean = rows / best(samples["clean"])
    section.add(Figure("refusals.object.clean", f"a {rows:,}-row object into Hologres, nothing refused", clean,
                       "rows/s", detail=timings(samples["clean"])))
    for name, key, how in (("one too long", "too_long", "found from the column's type in one checked pass"),
                           ("one check violation", "check", "found by the server: one more checked pass")):
        rate = rows / best(samples[name])
        section.add(Figure(f"refusals.object.{key}", f"the same object with {name} row ({how})", rate, "rows/s",
                           ratio=rate / clean, ratio_meaning="the rows/s of",
                           compared_with=f"the clean object, {clean:,.0f} rows/s", detail=timings(samples[name])))
    section.notes.append("A refused row sends the object from the fast path (the server's CSV COPY) to the checked "
                         "path (our reader, rows checked against the table's column types). A value the type "
                         "refuses is rejected there, in the same pass; a row only the server can judge (a CHECK "
                         "constraint, a key already present) costs one more pass, each.")


def _replace(lines: list[bytes], index: int, fields: list[bytes], column: int, value: bytes) -> bytes:
    changed = list(fields)
    changed[column] = value
    return b"\n".join([*lines[:index], b",".join(changed), *lines[index + 1:]])


def _tune(path, options: dict) -> None:
    """Set out.column_options in the config at ``path``; refused rows are rejected, not fatal."""
    import yaml

    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["out"]["column_options"] = {**document["out"].get("column_options", {}), **options}
    document["in"]["parser"]["stop_on_invalid_record"] = False
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _stream(bench: Bench, section: Section) -> None:
    from pipeline import config as config_module
    from pipeline.bench.stream import create_stream
    from pipeline.generate import put_sensor_records
    from pipeline.stream import StreamLoad

    records = bench.sizes.refusal_records
    stream = bench.name("refusals")
    create_stream(bench, stream)
    half = records // 2
    landed = put_sensor_records(bench.kinesis, stream, half, seed=SEED)
    bench.kinesis.put_record(StreamName=stream, PartitionKey="bad",
                             Data=json.dumps({"sensorId": 1, "currentTemperature": 20, "status": "x" * 17}).encode())
    landed += 1 + put_sensor_records(bench.kinesis, stream, records - half - 1, seed=SEED + 1)
    if landed != records:
        raise BenchError(f"only {landed:,} of {records:,} records landed in {stream}")
    samples: dict[str, list[float]] = {"varchar(64)": [], "varchar(16)": []}
    runs = 0
    for _ in range(min(2, bench.sizes.repeats)):
        for width in samples:
            runs += 1
            table = bench.name(f"refusals_stream_{runs}")
            bench.drop_on_cleanup(bench.redshift_url, SCHEMA, table, f"{table}_rejected")
            path = bench.sensor_data_config(table, stream, table, max_records=records)
            _tune(path, {"status": {"type": width}})
            bench.checkpoint(bench.redshift_url)
            started = time.perf_counter()
            summary = StreamLoad(config_module.load(path), emit=lambda _: None).run()
            samples[width].append(time.perf_counter() - started)
            refused = 1 if width == "varchar(16)" else 0
            if (summary.rows, summary.rejected) != (records - refused, refused):
                raise BenchError(f"refusals, stream into {width}: loaded {summary.rows:,} and rejected "
                                 f"{summary.rejected:,} of {records:,}")
    clean = records / best(samples["varchar(64)"])
    bad = records / best(samples["varchar(16)"])
    section.add(Figure("refusals.stream.clean", f"a {records:,}-record Kinesis batch into Redshift, nothing refused",
                       clean, "records/s", detail=timings(samples["varchar(64)"])))
    section.add(Figure("refusals.stream.too_long", "the same batch with one status longer than varchar(16) "
                                                   "(rejected before the COPY; the batch commits once)",
                       bad, "records/s", ratio=bad / clean, ratio_meaning="the records/s of",
                       compared_with=f"the clean batch, {clean:,.0f} records/s",
                       detail=timings(samples["varchar(16)"])))
