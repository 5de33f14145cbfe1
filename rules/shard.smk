rule shard:
    input:
        unpack(shard_inputs),
    output:
        results("shards/split={split}/{seq}.parquet"),
    log:
        results("logs/shard/{split}/{seq}.log"),
    group:
        "source"
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        kakashi=KAKASHI,
        source=source_flags,
        flags=cli_flags(
            config_hash=CONFIG_HASH,
            tolerance_frames=config["align"]["tolerance_frames"],
        ),
    shell:
        "{params.kakashi} shard --pose {input.pose:q} --features {input.features:q}"
        " --seq {wildcards.seq} --split {wildcards.split} {params.source} {params.flags}"
        " -o {output:q} > {log:q} 2>&1"


rule dataset_info:
    input:
        sheet_shards,
        playlist_markers,
    output:
        results("dataset_info.txt"),
    log:
        results("logs/dataset_info.log"),
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        kakashi=KAKASHI,
        shards=results("shards"),
    shell:
        "{params.kakashi} dataset info {params.shards:q} -o {output:q} > {log:q} 2>&1"
