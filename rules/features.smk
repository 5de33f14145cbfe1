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
        fps=config["fps"],
        hop_length=config["features"]["hop_length"],
        feature_set=",".join(config["features"]["set"]),
        n_mfcc=config["features"]["n_mfcc"],
    shell:
        "{params.kakashi} features {input:q} -o {output:q} --fps {params.fps}"
        " --hop-length {params.hop_length} --set {params.feature_set}"
        " --n-mfcc {params.n_mfcc} > {log:q} 2>&1"
