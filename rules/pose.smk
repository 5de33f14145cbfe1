rule pose:
    input:
        "results/clips/{seq}.mp4",
    output:
        "results/pose/{seq}.npz",
    params:
        backend=config["pose"]["backend"],
        min_person_fraction=config["pose"]["min_person_fraction"],
    log:
        "results/logs/pose/{seq}.log",
    benchmark:
        "results/benchmarks/pose/{seq}.tsv"
    threads: config["pose"]["workers"]
    resources:
        mem_mb=3000,
        runtime=120,
    conda:
        CONDA_ENV
    shell:
        "{KAKASHI} pose {input:q} -o {output:q} --backend {params.backend}"
        " --workers {threads} --min-person-fraction {params.min_person_fraction}"
        " --name {wildcards.seq} > {log:q} 2>&1"
