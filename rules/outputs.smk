# What a user looks at: an MP4 with the music, a self-contained 3-D viewer page, a BVH
# and a GLB (the dance on a rigged character) for animation tools, for every generated dance.


rule render:
    input:
        dance=results("dances/{model}/{song}.npz"),
        song=lambda wildcards: SONGS[wildcards.song],
    output:
        report(
            results("renders/{model}/{song}.mp4"),
            category="Dances",
            subcategory="{model}",
            caption="../report/render.rst",
            labels={"model": "{model}", "song": "{song}"},
        ),
    log:
        results("logs/render/{model}/{song}.log"),
    benchmark:
        results("benchmarks/render/{model}/{song}.tsv")
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        kakashi=KAKASHI,
        size=config["render"]["size"],
        style=config["render"]["style"],
    shell:
        "{params.kakashi} render {input.dance:q} --audio {input.song:q}"
        " --size {params.size} --style {params.style} -o {output:q} > {log:q} 2>&1"


rule viewer:
    input:
        dance=results("dances/{model}/{song}.npz"),
        song=lambda wildcards: SONGS[wildcards.song],
    output:
        results("viewer/{model}/{song}.html"),
    log:
        results("logs/viewer/{model}/{song}.log"),
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        kakashi=KAKASHI,
        title=lambda wildcards: f"Kakashi {wildcards.model}: {wildcards.song}",
    shell:
        "{params.kakashi} viewer {input.dance:q} --audio {input.song:q}"
        " --title {params.title:q} -o {output:q} > {log:q} 2>&1"


rule bvh:
    input:
        results("dances/{model}/{song}.npz"),
    output:
        results("bvh/{model}/{song}.bvh"),
    log:
        results("logs/bvh/{model}/{song}.log"),
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        kakashi=KAKASHI,
    shell:
        "{params.kakashi} export-bvh {input:q} -o {output:q} > {log:q} 2>&1"


rule glb:
    input:
        results("dances/{model}/{song}.npz"),
    output:
        results("glb/{model}/{song}.glb"),
    log:
        results("logs/glb/{model}/{song}.log"),
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        kakashi=KAKASHI,
        music=lambda wildcards: Path(SONGS[wildcards.song]).name,
    shell:
        "{params.kakashi} export-glb {input:q} --music {params.music:q} -o {output:q}"
        " > {log:q} 2>&1"
