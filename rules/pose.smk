rule pose:
    input:
        results("clips/{seq}.mp4"),
    output:
        results("pose/{seq}.npz"),
    log:
        results("logs/pose/{seq}.log"),
    benchmark:
        results("benchmarks/pose/{seq}.tsv")
    conda:
        CONDA_ENV
    threads: config["pose"]["workers"]
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        kakashi=KAKASHI,
        backend=config["pose"]["backend"],
        min_person_fraction=config["pose"]["min_person_fraction"],
    shell:
        "{params.kakashi} pose {input:q} -o {output:q} --backend {params.backend}"
        " --workers {threads} --min-person-fraction {params.min_person_fraction}"
        " --name {wildcards.seq} > {log:q} 2>&1"
