# Training and generation: every model in config `train.models`, then a dance for every
# song in config `songs` (and for every test-split song, for evaluate).


rule train:
    # One rule for every model in config `train.models`; a model that starts from another
    # (its `init` setting, e.g. crnngan from rnn) depends on that model's checkpoint.
    input:
        # The summary stands for every shard (its rule needs them all). Listing 10,000
        # shards here instead made each generate job's planning scan them: 20 M
        # comparisons, a third of planning a 10,000-source sheet.
        dataset=results("dataset_info.txt"),
        init=init_checkpoint,
    output:
        model=protected(results("models/{model}.pt")),
        losses=report(
            results("models/{model}.csv"),
            category="Training",
            caption="../report/losses.rst",
        ),
        curve=report(
            results("models/{model}.png"),
            category="Training",
            caption="../report/curve.rst",
        ),
    log:
        results("logs/train/{model}.log"),
    benchmark:
        results("benchmarks/train/{model}.tsv")
    conda:
        CONDA_ENV
    threads: TRAIN_THREADS
    resources:
        mem_mb=8000,
        runtime=TRAIN_RUNTIME,
        gpu=TRAIN_GPUS,
    params:
        kakashi=KAKASHI,
        shards=results("shards"),
        flags=train_flags,
    shell:
        "{params.kakashi} train --model {wildcards.model} --shards {params.shards:q}"
        " --out {output.model:q} --no-progress {params.flags} > {log:q} 2>&1"


rule generate:
    input:
        song=lambda wildcards: SONGS[wildcards.song],
        model=results("models/{model}.pt"),
    output:
        results("dances/{model}/{song}.npz"),
    log:
        results("logs/generate/{model}/{song}.log"),
    conda:
        CONDA_ENV
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        kakashi=KAKASHI,
        seed=config["generate"]["seed"],
        style=style_flag,
    shell:
        "{params.kakashi} generate {input.song:q} --checkpoint {input.model:q}"
        " --seed {params.seed} {params.style:q} -o {output:q} > {log:q} 2>&1"


rule generate_test:
    # One job per model for the whole test split, from the audio features in the shards:
    # the model loads once, and a cluster gets 2 jobs instead of one per test song.
    # config eval.takes dances per song (seeds generate.seed, +1, ...) for the variety.
    input:
        dataset=results("dataset_info.txt"),
        model=results("models/{model}.pt"),
    output:
        directory(results("eval/dances/{model}")),
    log:
        results("logs/generate_test/{model}.log"),
    benchmark:
        results("benchmarks/generate_test/{model}.tsv")
    conda:
        CONDA_ENV
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        kakashi=KAKASHI,
        shards=results("shards"),
        seed=config["generate"]["seed"],
        takes=config["eval"]["takes"],
    shell:
        "{params.kakashi} generate --shards {params.shards:q} --split test --takes {params.takes}"
        " --checkpoint {input.model:q} --seed {params.seed} -o {output:q} > {log:q} 2>&1"
