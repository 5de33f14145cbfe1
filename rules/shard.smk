def shard_inputs(wildcards):
    actual = sequence_split(wildcards.seq)
    if actual != wildcards.split:
        raise WorkflowError(
            f"{wildcards.seq} belongs to split {actual!r}; ask for {shard_path(wildcards.seq, actual)}"
        )
    inputs = {
        "pose": f"results/pose/{wildcards.seq}.npz",
        "features": f"results/features/{wildcards.seq}.npz",
    }
    name = playlist_of(wildcards.seq)
    if name:
        inputs["playlist"] = f"results/playlists/{name}.tsv"
    return inputs


rule shard:
    input:
        unpack(shard_inputs),
    output:
        "results/shards/split={split}/{seq}.parquet",
    params:
        uri=lambda wildcards, input: source_uri(wildcards.seq, input.get("playlist")),
        tolerance=config["align"]["tolerance_frames"],
        config_hash=CONFIG_HASH,
    log:
        "results/logs/shard/{split}/{seq}.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    shell:
        "{KAKASHI} shard --pose {input.pose:q} --features {input.features:q}"
        " --seq {wildcards.seq} --split {wildcards.split} --source-kind video"
        " --source-uri {params.uri:q} --config-hash {params.config_hash}"
        " --tolerance-frames {params.tolerance} -o {output:q} > {log:q} 2>&1"


rule dataset_info:
    input:
        video_shards,
        playlist_markers,
    output:
        "results/dataset_info.txt",
    log:
        "results/logs/dataset_info.log",
    conda:
        CONDA_ENV
    shell:
        "{KAKASHI} dataset info results/shards -o {output:q} > {log:q} 2>&1"
