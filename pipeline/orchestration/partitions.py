"""``<pipeline>_sync_partitions``: the object partitions made to match what is under the prefix now.

The sensor adds a partition for each object it sees and never removes one, so an object deleted from
S3 (a lifecycle rule, a cleanup) stays a partition. This job lists the prefix once (every key: it is
maintenance, not the O(new) tick), adds a partition for each object that has none (so
``dg launch --assets <table> --partition <key>`` works before the sensor has run), and, with
``delete_missing`` (the default), deletes the partitions whose object is gone. The rows those objects
loaded stay in the table, and their materializations in the asset's history.
"""

import dagster as dg

from pipeline import registry
from pipeline.orchestration.pipelines import Pipeline


class SyncConfig(dg.Config):
    delete_missing: bool = True  # delete partitions whose object no longer exists under the prefix


def sync_partitions_job(pipeline: Pipeline) -> dg.JobDefinition:
    from pipeline.orchestration.sensors import usable_partition_key

    listed_input = pipeline.config.input
    assert not registry.is_stream(listed_input)  # only the assets of objects are partitioned by object

    @dg.op(name=f"{pipeline.name}_sync_partitions_op", required_resource_keys={"s3"},
           description=f"Adds a partition of {pipeline.table_key.to_user_string()} for each object under the "
                       "prefix that has none, and deletes those whose object is gone.")
    def sync(context: dg.OpExecutionContext, config: SyncConfig) -> dg.Output[dict]:
        from pipeline.sources.s3 import acceptor, list_objects

        resolved = pipeline.resolve_source()
        source = resolved.input
        assert not registry.is_stream(source)
        if registry.in_s3(source):  # every object under the prefix, past total_file_count_limit too
            accept = acceptor(source, context.log.warning)
            objects = [obj for obj in list_objects(context.resources.s3.client(source.aws), source.bucket,
                                                   source.path_prefix, pattern=source.path_match_pattern)
                       if accept(obj)]
        else:
            objects = registry.store(source, lambda: None).listed(context.log.warning)
        listed = [obj.key for obj in objects if usable_partition_key(obj.key)]
        known = set(context.instance.get_dynamic_partitions(pipeline.partitions_name))
        added = [key for key in listed if key not in known]
        gone = sorted(known - set(listed)) if config.delete_missing else []
        if added:
            context.instance.add_dynamic_partitions(pipeline.partitions_name, added)
        for key in gone:
            context.instance.delete_dynamic_partition(pipeline.partitions_name, key)
        summary = {"listed": len(listed), "added": len(added), "deleted": len(gone)}
        context.log.info(f"{source.uri}: {len(listed):,} objects; {len(added):,} partitions added, "
                         f"{len(gone):,} deleted" + (f" (for example {gone[0]})" if gone else ""))
        return dg.Output(summary, metadata=summary)

    @dg.job(name=f"{pipeline.name}_sync_partitions", tags=pipeline.run_tags,
            description=f"Makes the partitions of {pipeline.table_key.to_user_string()} match the objects under "
                        f"{listed_input.uri}: adds the missing, deletes those whose object is gone "
                        "(config delete_missing: false keeps them).")
    def sync_job() -> None:
        sync()

    return sync_job
