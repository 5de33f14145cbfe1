# The metrics table: every model's dances for the test-split songs beside the baselines
# (ground truth, random retrieval, mean pose) and the real line (the val split), scored
# against the train split and against the held-out test dances (docs/evaluation.md).


rule evaluate:
    input:
        dataset=results("dataset_info.txt"),
        dances=evaluation_dances,
    output:
        metrics=results("eval/metrics.json"),
        table=report(
            results("eval/metrics.md"),
            category="Evaluation",
            caption="../report/metrics.rst",
        ),
        plots=report(
            directory(results("eval/plots")),
            patterns=["{name}.png"],
            category="Evaluation",
            caption="../report/plots.rst",
        ),
    log:
        results("logs/evaluate.log"),
    benchmark:
        results("benchmarks/evaluate.tsv")
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        kakashi=KAKASHI,
        shards=results("shards"),
        out=lambda wildcards, output: Path(output.metrics).parent,
        clip_s=config["eval"]["clip_s"],
        heldout=cli_flags(
            heldout_clip_s=config["eval"]["heldout_clip_s"],
            heldout_hop_s=config["eval"]["heldout_hop_s"],
        ),
        generated=lambda wildcards: evaluation_flags(),
    shell:
        "{params.kakashi} evaluate --reference {params.shards:q} {params.generated}"
        " --clip-s {params.clip_s} {params.heldout} -o {params.out:q} > {log:q} 2>&1"
