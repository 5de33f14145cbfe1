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
        info=results("dataset_info.txt"),
        manifest=results("shards/_manifest.tsv"),
    log:
        results("logs/dataset_info.log"),
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        kakashi=KAKASHI,
        shards=lambda wildcards, output: Path(output.manifest).parent,
        flags=cli_flags(
            sheet=config["sources"],
            playlists=results("playlists"),
            val=config["split"]["val"],
            test=config["split"]["test"],
        ),
    shell:
        # Also writes the manifest shards/_manifest.tsv of this sheet's shards: training,
        # generation and evaluation read only those, never a stale shard of another sheet.
        "{params.kakashi} dataset info {params.shards:q} {params.flags} -o {output.info:q}"
        " > {log:q} 2>&1"
