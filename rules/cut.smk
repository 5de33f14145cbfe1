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
        span=span_flags,
        flags=cli_flags(
            fps=config["fps"],
            max_height=config["cut"]["max_height"],
            audio_sr=config["cut"]["audio_sr"],
        ),
    shell:
        "{params.kakashi} cut {input:q} -o {output.video:q} --audio-output {output.audio:q}"
        " {params.span} {params.flags} > {log:q} 2>&1"
