checkpoint playlist:
    output:
        "results/playlists/{playlist}.tsv",
    params:
        url=lambda wildcards: PLAYLISTS.loc[wildcards.playlist, "source"],
    log:
        "results/logs/playlist/{playlist}.log",
    retries: config["fetch"]["retries"]
    conda:
        CONDA_ENV
    shell:
        "{KAKASHI} playlist {params.url:q} --prefix {wildcards.playlist}"
        " -o {output:q} > {log:q} 2>&1"


def fetch_inputs(wildcards):
    name = playlist_of(wildcards.seq)
    return {"playlist": f"results/playlists/{name}.tsv"} if name else {}


rule fetch:
    input:
        unpack(fetch_inputs),
    output:
        temp("results/raw/{seq}.video"),
    params:
        url=lambda wildcards, input: source_uri(wildcards.seq, input.get("playlist")),
        max_height=config["fetch"]["max_height"],
    log:
        "results/logs/fetch/{seq}.log",
    retries: config["fetch"]["retries"]
    resources:
        mem_mb=1000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "{KAKASHI} fetch {params.url:q} -o {output:q} --max-height {params.max_height}"
        " > {log:q} 2>&1"


def playlist_entry_shards(wildcards):
    return [
        shard_path(entry["seq"], sequence_split(entry["seq"]))
        for entry in playlist_entries(wildcards.playlist)
    ]


rule playlist_done:
    input:
        playlist_entry_shards,
    output:
        touch("results/playlists/{playlist}.done"),
    log:
        "results/logs/playlist_done/{playlist}.log",
    localrule: True
