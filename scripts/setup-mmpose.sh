#!/usr/bin/env bash
# Add the MMPose backend's stack (mmcv 2.1.0 with compiled ops, mmengine, mmdet, mmpose)
# to an existing Kakashi venv (scripts/setup.sh makes it), keeping mediapipe working.
#
#   scripts/setup-mmpose.sh              # into ./.venv
#   KAKASHI_VENV=/path/to/venv scripts/setup-mmpose.sh
#   KAKASHI_WHEELS=/dir scripts/setup-mmpose.sh   # use a prebuilt mmcv wheel from /dir
#
# Idempotent: a second run only checks the imports. mmcv 2.1.0 has no wheel for recent
# torch, so pip builds it from source once (10-30 min on 2 cores) and keeps the built
# wheel in its cache; later runs on the same machine reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${KAKASHI_VENV:-.venv}
python="$venv/bin/python"
if [ ! -x "$python" ]; then
    echo "setup-mmpose: no venv at $venv; run scripts/setup.sh first" >&2
    exit 1
fi
pip=("$python" -m pip)

check() {
    # The compiled ops (RTMDet's NMS), both packages, and mediapipe's cv2 (contrib build).
    # pkg_resources: mmengine uses it at run time, setuptools >= 81 no longer has it.
    "$python" - <<'EOF'
import pkg_resources
import mmcv, mmcv.ops, mmdet, mmengine, mmpose
import cv2, mediapipe
assert mmcv.__version__ == "2.1.0" and mmdet.__version__ == "3.3.0", "wrong versions"
assert mmpose.__version__ == "1.3.2" and mmengine.__version__ == "0.10.7", "wrong versions"
assert hasattr(cv2, "xfeatures2d"), "cv2 is not opencv-contrib-python"
mediapipe.solutions.pose.Pose  # noqa: B018
EOF
}
if check 2>/dev/null; then
    echo "setup-mmpose: mmpose stack already installed in $venv"
    exit 0
fi

# Every pip call below is held to these: mediapipe and pyarrow need NumPy 1.x.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
printf 'numpy<2\n' >"$constraints"
find_links=()
if [ -n "${KAKASHI_WHEELS:-}" ]; then
    find_links=(--find-links "$KAKASHI_WHEELS")
fi

# mmcv's and chumpy's setup.py import setuptools APIs that setuptools 70 removed, and are
# built without isolation (mmcv must compile against the installed torch); mmengine needs
# pkg_resources at run time. torch declares setuptools>=77 but does not need it at run
# time: pip's conflict warning is expected. (scripts/setup.sh's `pip install -e .` puts
# setuptools 77+ back; running this script again restores it.)
"${pip[@]}" install --quiet -c "$constraints" wheel "setuptools<70"
if ! "$python" -c "import mmcv.ops" 2>/dev/null; then
    MMCV_WITH_OPS=1 "${pip[@]}" install --quiet -c "$constraints" "${find_links[@]}" \
        --no-build-isolation "mmcv==2.1.0"
fi
"${pip[@]}" install --quiet -c "$constraints" "mmengine==0.10.7"
"${pip[@]}" install --quiet -c "$constraints" --no-build-isolation chumpy
# mmpose declares torchvision, which would pull another torch (and PyPI's build for torch
# 2.13 is CUDA-only); Kakashi avoids the one module that needs it (mmpose.apis). Install
# both with --no-deps and their real requirements by hand.
"${pip[@]}" install --quiet -c "$constraints" --no-deps "mmdet==3.3.0" "mmpose==1.3.2"
"${pip[@]}" install --quiet -c "$constraints" --no-build-isolation \
    json_tricks munkres xtcocotools pycocotools shapely terminaltables scipy matplotlib pillow
# mmcv and mmengine pull opencv-python, whose cv2 overwrites opencv-contrib-python's (the
# one mediapipe needs). mmcv only needs cv2, which contrib provides: put contrib back.
if "${pip[@]}" show --quiet opencv-python >/dev/null 2>&1; then
    "${pip[@]}" uninstall --quiet --yes opencv-python
fi
"${pip[@]}" install --quiet -c "$constraints" --force-reinstall --no-deps \
    "opencv-contrib-python>=4.8,<4.12"
check
echo "setup-mmpose: mmpose stack installed in $venv"
