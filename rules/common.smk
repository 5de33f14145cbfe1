# Helpers, validation and wiring shared by the rules. No stage logic lives here:
# sheet parsing and checks are kakashi.sources, so tests exercise the same code.

import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))

from kakashi.errors import KakashiError, SheetError
from kakashi.models.config import init_path
from kakashi.models.config import resolve as resolve_train
from kakashi.fetch import read_playlist_tsv
from kakashi.sources import SAFE_ID, config_hash, is_url, read_sheet
from kakashi.sources import sequence_split as split_of

# Stages run as `python -m kakashi` from this checkout's src/: with the Python that runs
# Snakemake (a venv need not be activated), or under --sdm conda the environment's python.
_PYTHON = (
    "python"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else shlex.quote(sys.executable)
)
KAKASHI = f"PYTHONPATH={shlex.quote(str(SRC))} {_PYTHON} -m kakashi"
CONDA_ENV = "../envs/kakashi.yaml"

validate(config, "../schemas/config.schema.yaml")

try:
    SOURCES = read_sheet(
        config["sources"], config["split"]["val"], config["split"]["test"]
    )
except SheetError as error:
    raise WorkflowError(f"invalid sources sheet: {error}") from None

CONFIG_HASH = config_hash(config)
RESULTS = config["results"].rstrip("/")


def cli_flags(**options):
    """`--key=value` flags for the kakashi CLI, every value shell-quoted.

    Per-source rules take their settings as one flags string, built once for config values
    and once per job for sheet values: each `{placeholder}` in a shell command is formatted
    for every job, which is a large part of planning a 10,000-source sheet.
    """
    return " ".join(
        f"--{key.replace('_', '-')}={shlex.quote(str(value))}"
        for key, value in options.items()
    )


def results(path):
    """A path under the output folder (config `results`, default results/)."""
    return f"{RESULTS}/{path}"


# Rows that are one sequence each (videos and motion files); playlists expand later.
SINGLES = SOURCES[SOURCES["kind"] != "playlist"]
PLAYLISTS = SOURCES[SOURCES["kind"] == "playlist"]
# The same rows as plain dicts, id -> {column: value}. Input functions and params run
# several times per job, and a 10,000-row sheet makes ~40,000 jobs: a dict lookup costs
# well under a microsecond where a pandas .loc costs tens (see bench/plan.py).
SINGLE_ROWS = SINGLES.to_dict(orient="index")
PLAYLIST_ROWS = PLAYLISTS.to_dict(orient="index")


wildcard_constraints:
    seq=SAFE_ID.pattern,
    playlist=SAFE_ID.pattern,
    split="train|val|test",


def shard_path(seq, split):
    return f"{RESULTS}/shards/split={split}/{seq}.parquet"


# Built once: `all` and `dataset_info` both ask for them, and iterating the sheet per call
# is what made planning a large sheet slow.
SHEET_SHARDS = [shard_path(seq, row["split"]) for seq, row in SINGLE_ROWS.items()]
PLAYLIST_MARKERS = [f"{RESULTS}/playlists/{name}.done" for name in PLAYLIST_ROWS]


def sheet_shards(wildcards):
    return SHEET_SHARDS


def playlist_markers(wildcards):
    return PLAYLIST_MARKERS


def playlist_entries(name):
    """Entries of a playlist row; known only once its checkpoint has listed it."""
    entries = read_playlist_tsv(Path(checkpoints.playlist.get(playlist=name).output[0]))
    clashes = [entry["seq"] for entry in entries if entry["seq"] in SINGLE_ROWS]
    if clashes:
        raise WorkflowError(
            f"playlist {name!r}: entry id(s) {', '.join(clashes)} are also sheet ids; "
            "rename the sheet rows or the playlist row"
        )
    return entries


def playlist_of(seq):
    """The playlist row a sequence id like NAME-001 comes from, or None."""
    name, _, index = seq.rpartition("-")
    if name in PLAYLIST_ROWS and index.isdigit() and seq not in SINGLE_ROWS:
        return name
    return None


def source_row(seq):
    """Sheet fields of a sequence (a dict): its own row, or its playlist's for an entry."""
    row = SINGLE_ROWS.get(seq)
    if row is not None:
        return row
    name = playlist_of(seq)
    if name is None:
        raise WorkflowError(f"{seq!r} is neither a sheet id nor a playlist entry")
    return PLAYLIST_ROWS[name]


def sequence_split(seq):
    return split_of(
        seq, source_row(seq)["split"], config["split"]["val"], config["split"]["test"]
    )


def source_kind(seq):
    """video or motion (a playlist entry is a video)."""
    row = SINGLE_ROWS.get(seq)
    return row["kind"] if row is not None else "video"


def pose_file(seq):
    folder = "motion" if source_kind(seq) == "motion" else "pose"
    return f"{RESULTS}/{folder}/{seq}.npz"


def audio_file(seq):
    if source_kind(seq) == "motion":
        return f"{RESULTS}/motion/{seq}.wav"
    return f"{RESULTS}/clips/{seq}.wav"


def optional(value):
    """A sheet value for a `--flag=VALUE` argument: empty where the cell was empty."""
    return "" if value is None or value != value else value


def motion_field(seq, column):
    if source_kind(seq) != "motion":
        raise WorkflowError(f"{seq} is a {source_kind(seq)}, not a motion row")
    return optional(SINGLE_ROWS[seq][column])


def is_remote(seq):
    row = SINGLE_ROWS.get(seq)
    return row is None or is_url(row["source"])


def source_uri(seq, playlist_tsv=None):
    if playlist_tsv:
        entries = {
            entry["seq"]: entry for entry in read_playlist_tsv(Path(playlist_tsv))
        }
        if seq not in entries:
            raise WorkflowError(f"{seq} is not an entry of {playlist_tsv}")
        return entries[seq]["url"]
    return source_row(seq)["source"]


def end_seconds(seq):
    return optional(source_row(seq)["end"])  # empty: to the end


def span_flags(wildcards):
    """--start/--end of a sequence's sheet row (an empty end: to the end)."""
    return cli_flags(
        start=source_row(wildcards.seq)["start"], end=end_seconds(wildcards.seq)
    )


def motion_flags(wildcards):
    """A motion row's audio offset, source fps and joint layout (empty: detect)."""
    return cli_flags(
        audio_offset=motion_field(wildcards.seq, "audio_offset_s"),
        source_fps=motion_field(wildcards.seq, "fps"),
        skeleton=motion_field(wildcards.seq, "skeleton"),
    )


def source_flags(wildcards, input):
    """Where a shard came from: the source kind and its URI (a playlist entry's own URL),
    and its style where the sheet gives one (only then: a sheet without styles keeps the
    commands, so its shards are not rebuilt)."""
    style = source_row(wildcards.seq).get("style")
    return cli_flags(
        source_kind=source_kind(wildcards.seq),
        source_uri=source_uri(wildcards.seq, input.get("playlist")),
        **({"style": style} if isinstance(style, str) and style else {}),
    )


def fetch_inputs(wildcards):
    name = playlist_of(wildcards.seq)
    return {"playlist": f"{RESULTS}/playlists/{name}.tsv"} if name else {}


def playlist_entry_shards(wildcards):
    return [
        shard_path(entry["seq"], sequence_split(entry["seq"]))
        for entry in playlist_entries(wildcards.playlist)
    ]


def cut_input(wildcards):
    if source_kind(wildcards.seq) == "motion":
        raise WorkflowError(f"{wildcards.seq} is a motion row: it has no video to cut")
    if is_remote(wildcards.seq):
        return f"{RESULTS}/raw/{wildcards.seq}.video"
    return SINGLE_ROWS[wildcards.seq]["source"]  # local files are read in place


def shard_inputs(wildcards):
    actual = sequence_split(wildcards.seq)
    if actual != wildcards.split:
        raise WorkflowError(
            f"{wildcards.seq} belongs to split {actual!r}; ask for {shard_path(wildcards.seq, actual)}"
        )
    inputs = {
        "pose": pose_file(wildcards.seq),
        "features": f"{RESULTS}/features/{wildcards.seq}.npz",
    }
    name = playlist_of(wildcards.seq)
    if name:
        inputs["playlist"] = f"{RESULTS}/playlists/{name}.tsv"
    return inputs


# ---- Models, dances, evaluation ------------------------------------------------------


def song_path(path):
    """A song from config: relative to the working directory, else to this repository.

    The second place lets the demo config (songs in data/demo/music) run from any
    working directory, e.g. `snakemake --directory elsewhere`.
    """
    if Path(path).is_absolute() or Path(path).exists():
        return path
    in_repository = Path(workflow.basedir) / path
    return str(in_repository) if in_repository.exists() else path


# Songs to choreograph: config `songs` maps a safe id to an audio file, or to {path, style}.
SONGS = {
    song: song_path(entry if isinstance(entry, str) else entry["path"])
    for song, entry in config["songs"].items()
}
# The styles asked for; a song without one gets `kakashi generate`'s own choice (auto when
# the checkpoint knows styles).
SONG_STYLES = {
    song: entry["style"]
    for song, entry in config["songs"].items()
    if isinstance(entry, dict) and "style" in entry
}


def style_flag(wildcards):
    """`--style NAME` for a song whose config entry names a style, else nothing."""
    style = SONG_STYLES.get(wildcards.song)
    return ["--style", style] if style else []


MODELS = config["train"]["models"]
# The sheet's own test-split rows: `evaluate` runs when there is at least one. The models
# dance to every test shard (`generate_test`), playlist entries included.
TEST_SEQS = [seq for seq, row in SINGLE_ROWS.items() if row["split"] == "test"]
# Ranks of `kakashi train --devices N` (DistributedDataParallel).
TRAIN_DEVICES = config["train"]["devices"]
# One thread per rank at least when the ranks are CPU processes.
TRAIN_THREADS = max(config["train"]["threads"], TRAIN_DEVICES)
TRAIN_RUNTIME = config["train"]["runtime"]
# Training asks the scheduler for GPUs (one per rank) only where config says so
# (train.gpu), so the same workflow runs on a laptop and on a cluster's GPU partition.
TRAIN_GPUS = TRAIN_DEVICES if config["train"]["gpu"] else 0


def model_settings(model):
    """The resolved `kakashi train` settings of a model (kakashi.models.config)."""
    return resolve_train(model, config["train"]).asdict()


# Every configured model's settings, resolved (and checked) once at parse time: a typo in
# `train:` stops the run before anything is computed.
try:
    MODEL_SETTINGS = {model: model_settings(model) for model in MODELS}
except KakashiError as error:
    raise WorkflowError(f"invalid train settings: {error}") from None


def init_checkpoint(wildcards):
    """The checkpoint a model starts from (its `init` setting), if any."""
    init = MODEL_SETTINGS[wildcards.model].get("init")  # only some models have one
    if not init:
        return []
    return str(init_path(init, results(f"models/{wildcards.model}.pt")))


def train_flags(wildcards, input):
    """`kakashi train` flags: every resolved setting (so the schema's defaults, not the CLI's,
    are what runs), with `init` pointing at the input checkpoint."""
    settings = dict(MODEL_SETTINGS[wildcards.model])
    for key in ("model", "shards", "out"):
        settings.pop(key)
    if "init" in settings:
        settings["init"] = input.init
    return " ".join(
        f"--{key.replace('_', '-')} {shlex.quote(str(value))}"
        for key, value in sorted(settings.items())
    )


def generated_dances(wildcards):
    """Every configured model's dance, render, viewer page, BVH and GLB for every song."""
    return [
        results(f"{folder}/{model}/{song}.{ext}")
        for model in MODELS
        for song in SONGS
        for folder, ext in (
            ("dances", "npz"),
            ("renders", "mp4"),
            ("viewer", "html"),
            ("bvh", "bvh"),
            ("glb", "glb"),
        )
    ]


def evaluation_dances(wildcards):
    return [results(f"eval/dances/{model}") for model in MODELS]


def evaluation_flags():
    """--generated NAME=FOLDER per model, --baselines and --seed for `kakashi evaluate`."""
    flags = [
        f"--generated {shlex.quote(f'{model}={RESULTS}/eval/dances/{model}')}"
        for model in MODELS
    ]
    flags.append(f"--baselines {','.join(config['eval']['baselines']) or 'none'}")
    flags.append(f"--seed {config['eval']['seed']}")
    return " ".join(flags)


wildcard_constraints:
    model="|".join(MODELS),
    song=SAFE_ID.pattern,


def evaluation_targets(wildcards):
    """The metrics table, once there is a test split and a model to score."""
    return [results("eval/metrics.json")] if TEST_SEQS and MODELS else []
