checkpoint playlist:
    output:
        results("playlists/{playlist}.tsv"),
    log:
        results("logs/playlist/{playlist}.log"),
    retries: config["fetch"]["retries"]
    conda:
        CONDA_ENV
    resources:
        mem_mb=500,
        runtime=10,
    params:
        kakashi=KAKASHI,
        url=lambda wildcards: PLAYLIST_ROWS[wildcards.playlist]["source"],
    shell:
        "{params.kakashi} playlist {params.url:q} --prefix {wildcards.playlist}"
        " -o {output:q} > {log:q} 2>&1"


rule fetch:
    input:
        unpack(fetch_inputs),
    output:
        temp(results("raw/{seq}.video")),
    log:
        results("logs/fetch/{seq}.log"),
    retries: config["fetch"]["retries"]
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        kakashi=KAKASHI,
        url=lambda wildcards, input: source_uri(wildcards.seq, input.get("playlist")),
        max_height=config["fetch"]["max_height"],
    shell:
        "{params.kakashi} fetch {params.url:q} -o {output:q} --max-height {params.max_height}"
        " > {log:q} 2>&1"


rule playlist_done:
    input:
        playlist_entry_shards,
    output:
        touch(results("playlists/{playlist}.done")),
    log:
        results("logs/playlist_done/{playlist}.log"),
    localrule: True
