rule pose:
    input:
        results("clips/{seq}.mp4"),
    output:
        results("pose/{seq}.npz"),
    log:
        results("logs/pose/{seq}.log"),
    benchmark:
        results("benchmarks/pose/{seq}.tsv")
    group:
        "source"
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
        max_people=config["pose"].get("max_people", 1),
        multi_person=config["pose"].get("multi_person", "keep"),
        # pose.mmpose.* as --mmpose-KEY VALUE flags; unset keys keep the backend defaults.
        mmpose=" ".join(
            f"--mmpose-{key.replace('_', '-')} {shlex.quote(str(value))}"
            for key, value in (config["pose"].get("mmpose") or {}).items()
        ),
    shell:
        "{params.kakashi} pose {input:q} -o {output:q} --backend {params.backend}"
        " --workers {threads} --min-person-fraction {params.min_person_fraction}"
        " --max-people {params.max_people} --multi-person {params.multi_person}"
        " {params.mmpose} --name {wildcards.seq} > {log:q} 2>&1"
