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
        start=lambda wildcards: source_row(wildcards.seq)["start"],
        end=lambda wildcards: end_seconds(wildcards.seq),
        offset=lambda wildcards: motion_field(wildcards.seq, "audio_offset_s"),
        source_fps=lambda wildcards: motion_field(wildcards.seq, "fps"),
        skeleton=lambda wildcards: motion_field(wildcards.seq, "skeleton"),
    shell:
        "{params.kakashi} motion {input.motion:q} --audio {input.audio:q}"
        " -o {output.pose:q} --audio-output {output.audio:q} --fps {params.fps}"
        " --start {params.start} --end={params.end} --audio-offset={params.offset}"
        " --source-fps={params.source_fps} --skeleton={params.skeleton:q} > {log:q} 2>&1"
