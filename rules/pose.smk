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
        # pose.smoothing.* become --smoothing-KEY flags; pose.mmpose.* --mmpose-KEY flags
        # (unset keys keep the backend defaults).
        flags=cli_flags(
            backend=config["pose"]["backend"],
            min_person_fraction=config["pose"]["min_person_fraction"],
            max_people=config["pose"]["max_people"],
            multi_person=config["pose"]["multi_person"],
            root=config["pose"]["root"],
            root_fov_deg=config["pose"]["root_fov_deg"],
            **{
                f"smoothing_{key}": value
                for key, value in config["pose"]["smoothing"].items()
            },
            **{
                f"mmpose_{key}": value
                for key, value in config["pose"]["mmpose"].items()
            },
        ),
    shell:
        "{params.kakashi} pose {input:q} -o {output:q} --workers {threads} {params.flags}"
        " --name {wildcards.seq} > {log:q} 2>&1"
