rule cut:
    input:
        cut_input,
    output:
        video=results("clips/{seq}.mp4"),
        audio=results("clips/{seq}.wav"),
    log:
        results("logs/cut/{seq}.log"),
    benchmark:
        results("benchmarks/cut/{seq}.tsv")
    group:
        "source"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        kakashi=KAKASHI,
        start=lambda wildcards: source_row(wildcards.seq)["start"],
        end=lambda wildcards: end_seconds(wildcards.seq),
        fps=config["fps"],
        max_height=config["cut"]["max_height"],
        audio_sr=config["cut"]["audio_sr"],
    shell:
        "{params.kakashi} cut {input:q} -o {output.video:q} --audio-output {output.audio:q}"
        " --start {params.start} --end={params.end} --fps {params.fps}"
        " --max-height {params.max_height} --audio-sr {params.audio_sr} > {log:q} 2>&1"
