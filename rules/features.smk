rule features:
    input:
        lambda wildcards: audio_file(wildcards.seq),
    output:
        results("features/{seq}.npz"),
    log:
        results("logs/features/{seq}.log"),
    benchmark:
        results("benchmarks/features/{seq}.tsv")
    group:
        "source"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        kakashi=KAKASHI,
        flags=cli_flags(
            fps=config["fps"],
            hop_length=config["features"]["hop_length"],
            set=",".join(config["features"]["set"]),
            n_mfcc=config["features"]["n_mfcc"],
        ),
    shell:
        "{params.kakashi} features {input:q} -o {output:q} {params.flags} > {log:q} 2>&1"
