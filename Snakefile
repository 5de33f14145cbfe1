# Kakashi: dance videos -> aligned pose/audio Parquet shards (and, later, models).
# Rules are thin: each calls one `kakashi` subcommand; see rules/*.smk.

from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/fetch.smk"
include: "rules/cut.smk"
include: "rules/motion.smk"
include: "rules/features.smk"
include: "rules/pose.smk"
include: "rules/shard.smk"


rule all:
    default_target: True
    input:
        sheet_shards,
        playlist_markers,
        results("dataset_info.txt"),
