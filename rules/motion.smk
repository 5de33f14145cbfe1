rule motion:
    input:
        motion=lambda wildcards: SINGLE_ROWS[wildcards.seq]["source"],
        audio=lambda wildcards: SINGLE_ROWS[wildcards.seq]["audio"],
    output:
        pose=results("motion/{seq}.npz"),
        audio=results("motion/{seq}.wav"),
    log:
        results("logs/motion/{seq}.log"),
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
        span=span_flags,
        motion=motion_flags,
    shell:
        "{params.kakashi} motion {input.motion:q} --audio {input.audio:q}"
        " -o {output.pose:q} --audio-output {output.audio:q} --fps {params.fps}"
        " {params.span} {params.motion} > {log:q} 2>&1"
