#!/usr/bin/env bash
# The GPU figures of issues 4 and 6, on a lent device machine (see prepare.sh for the wheels).
#
#   bash benchmarks/gpu/check.sh [SLICES]      # default 2000 slices
#
# Installs the carried wheels into /tmp/site, checks that ONNX Runtime offers the CUDA
# execution provider and that the classifier and OCR load on it, then writes to $OUT (or
# ./gpu-figures): classifier.txt (bench_classifier on cuda and on the CPU, batch 32 and 256),
# run.json and run.txt (bench_run on a generated clean CT series with the models in one
# inference process on the GPU, next to the plain pydicom floor), and nvidia-smi.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
SLICES="${1:-2000}"
OUT="${OUT:-$PWD/gpu-figures}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ ! -d /tmp/site/onnxruntime ]; then
    name=$(cat .gpu/deps/ort-wheel-name)
    cat .gpu/ort-*/piece-* > "/tmp/$name"
    echo "$(cat .gpu/deps/ort-wheel-sha256)  /tmp/$name" | sha256sum -c -
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .gpu/deps/*.whl "/tmp/$name"
fi
# The image keeps CUDA 13 and cuDNN in NVIDIA's pip packages, in its own site-packages, which
# neither the loader nor ONNX Runtime's preloading (it looks beside onnxruntime, here /tmp/site)
# searches: name their folders for every process of the run.
nvidia_libs=$(python3 - <<'PY'
import glob, os, site
found = {os.path.dirname(p) for root in site.getsitepackages()
         for p in glob.glob(os.path.join(root, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(found)))
PY
)
export LD_LIBRARY_PATH="${nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
python3 - <<'PY'
import onnxruntime as ort
from scrubber.detect import load_classifier
from scrubber.detect.classifier import cuda_available
providers = ort.get_available_providers()
print("onnxruntime", ort.__version__, providers)
if "CUDAExecutionProvider" not in providers or not cuda_available():
    raise SystemExit("no CUDA execution provider: the GPU figures cannot be taken")
print("classifier on", load_classifier(None, device="cuda").device)
import numpy as np
from scrubber.detect.ocr import load_engine
engine = load_engine("rapidocr", threads=1, device="cuda")
print("rapidocr on cuda:", len(engine.read(np.zeros((64, 256), np.uint8))), "regions on a blank frame")
PY
{
    python3 benchmarks/bench_classifier.py --device cuda --batch-size 32
    python3 benchmarks/bench_classifier.py --device cuda --batch-size 256
    python3 benchmarks/bench_classifier.py --device cpu --threads "$(nproc)" --batch-size 32
} 2>&1 | tee "$OUT/classifier.txt"
python3 benchmarks/bench_run.py --no-corpus --slices "$SLICES" --rounds 3 --device cuda \
    --inference shared --json "$OUT/run.json" 2>&1 | tee "$OUT/run.txt"
