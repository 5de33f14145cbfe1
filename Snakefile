# Kakashi: dance videos -> aligned pose/audio Parquet shards -> models -> dances,
# renders and the metrics table.
# Rules are thin: each calls one `kakashi` subcommand; see rules/*.smk.

from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/fetch.smk"
include: "rules/cut.smk"
include: "rules/motion.smk"
include: "rules/features.smk"
include: "rules/pose.smk"
include: "rules/shard.smk"
include: "rules/models.smk"
include: "rules/outputs.smk"
include: "rules/evaluate.smk"


rule all:
    default_target: True
    input:
        sheet_shards,
        playlist_markers,
        results("dataset_info.txt"),
        generated_dances,
        evaluation_targets,
