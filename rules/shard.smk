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
        uri=lambda wildcards, input: source_uri(wildcards.seq, input.get("playlist")),
        kind=lambda wildcards: source_kind(wildcards.seq),
        tolerance=config["align"]["tolerance_frames"],
        config_hash=CONFIG_HASH,
    shell:
        "{params.kakashi} shard --pose {input.pose:q} --features {input.features:q}"
        " --seq {wildcards.seq} --split {wildcards.split} --source-kind {params.kind}"
        " --source-uri {params.uri:q} --config-hash {params.config_hash}"
        " --tolerance-frames {params.tolerance} -o {output:q} > {log:q} 2>&1"


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
