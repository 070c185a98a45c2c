#!/usr/bin/env bash
# Prepare the wheels a GPU check needs on a lent device machine (run here, where pip reaches
# the package registry):
#
#   bash benchmarks/gpu/prepare.sh       # writes .gpu/ in the project root (git-ignored)
#
# The lent NVIDIA machines run their own image: Python 3.12, PyTorch, the CUDA 13 runtime
# libraries (nvidia-cuda-runtime, nvidia-cudnn-cu13, nvidia-cublas, nvidia-cufft, ...), OpenCV,
# NumPy and the CPU build of ONNX Runtime; nothing can be fetched there. What scrubber needs
# beyond that travels as wheels, in folders of at most 60 MiB (one call carries 64 MiB):
#
#   .gpu/deps/       scrubber's core dependencies the image lacks (about 45 MB), and the name
#                    and SHA-256 of the onnxruntime-gpu wheel
#   .gpu/ort-NN/     onnxruntime-gpu (built for CUDA 13, like the image), cut into equal pieces
#                    of at most 60 MiB (five for the 255 MB wheel of 1.31.1)
#
# Carry them one call after another while the machine is warm (what a call carried stays there
# for the next): `carry: [".gpu/deps"]`, then `[".gpu/ort-00"]`, `[".gpu/ort-01"]`, ... each
# with a command as short as `true`; the last call runs `bash benchmarks/gpu/check.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
ORT_GPU="${ORT_GPU:-onnxruntime-gpu==1.31.1}"
PLATFORMS=()
for tag in manylinux1 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 \
    manylinux_2_28 manylinux_2_31 manylinux_2_34; do
    PLATFORMS+=(--platform "${tag}_x86_64")
done
download() {
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${PLATFORMS[@]}" -d "$@"
}
rm -rf .gpu
mkdir -p .gpu/deps .gpu/ort
# scrubber's core dependencies (pyproject.toml), and those of rapidocr the image lacks
download .gpu/deps "pydicom>=3.0.1" "pylibjpeg>=2.0" "pylibjpeg-libjpeg>=2.1" \
    "pylibjpeg-openjpeg>=2.3" "pylibjpeg-rle>=2.0" "pyjpegls>=1.3" "rapidocr>=3.4" \
    "rapidfuzz>=3.9" pyclipper shapely omegaconf colorlog
download .gpu/ort "$ORT_GPU"
wheel=$(ls .gpu/ort/*.whl)
basename "$wheel" > .gpu/deps/ort-wheel-name
sha256sum "$wheel" | cut -d' ' -f1 > .gpu/deps/ort-wheel-sha256
size=$(stat -c %s "$wheel")
pieces=$(( (size + 62914559) / 62914560 ))  # equal pieces of at most 60 MiB
split -n "$pieces" -d "$wheel" .gpu/ort/piece-
for piece in .gpu/ort/piece-*; do
    folder=".gpu/ort-${piece##*-}"
    mkdir "$folder" && mv "$piece" "$folder/"
done
rm -r .gpu/ort
du -sh .gpu/deps .gpu/ort-*
echo "carry, one call each: .gpu/deps $(ls -d .gpu/ort-* | tr '\n' ' ')"
echo "then run: bash benchmarks/gpu/check.sh"
