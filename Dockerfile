# scrubber images. Two targets:
#
#   docker build --target server-gpu -t scrubber-server .   # the scrub server on a CUDA GPU (default)
#   docker build --target cli -t scrubber .                 # the command line, CPU only
#
# Run the server (host needs the NVIDIA container toolkit):
#   docker run --gpus all -p 127.0.0.1:8000:8000 \
#     -e SCRUBBER_API_TOKENS=submitter:...,reviewer:... \
#     -v /data/scrubber:/data scrubber-server --project TRIAL
#
# Nothing is downloaded at run time: the classifier (models/) is copied in and its sha256 checked
# while building; RapidOCR's models ship inside its wheel.

# ---------------------------------------------------------------------------------------------
# The command line on CPU.
FROM python:3.11-slim AS cli

RUN apt-get update \
    && apt-get install -y --no-install-recommends dicom3tools \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 scrubber
WORKDIR /opt/scrubber
COPY pyproject.toml README.md THIRD_PARTY_NOTICES.md ./
COPY scrubber ./scrubber
COPY models ./models
RUN pip install --no-cache-dir . \
    && SCRUBBER_MODEL_DIR=/opt/scrubber/models python -c \
       "from scrubber.detect import load_classifier; load_classifier(device='cpu')"

USER scrubber
ENV SCRUBBER_HOME=/home/scrubber/.local/share/scrubber \
    SCRUBBER_MODEL_DIR=/opt/scrubber/models \
    ORT_DISABLE_TELEMETRY=1
ENTRYPOINT ["scrubber"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------
# The scrub server on a CUDA GPU: CUDA 13 runtime with cuDNN 9, what onnxruntime-gpu 1.31 is
# built for (its wheel asks for nvidia-cuda-runtime ~=13.0; the CUDA 12 base this image had
# before could not start ONNX Runtime's CUDA provider once pip took a CUDA 13 release). The host
# needs an NVIDIA driver for CUDA 13 (580 or newer). Python 3.12 (Ubuntu 24.04's), ONNX Runtime
# with the CUDA execution provider for the classifier and RapidOCR. torch is not installed: the
# default OCR engine runs on ONNX Runtime.
FROM nvidia/cuda:13.1.1-cudnn-runtime-ubuntu24.04 AS server-gpu

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1

WORKDIR /opt/scrubber
COPY pyproject.toml README.md THIRD_PARTY_NOTICES.md ./
COPY scrubber ./scrubber
COPY models ./models
# onnxruntime (CPU) and onnxruntime-gpu install the same module: keep only the GPU build.
RUN pip install '.[server]' \
    && pip uninstall -y onnxruntime \
    && pip install --force-reinstall --no-deps 'onnxruntime-gpu>=1.31,<2' \
    && SCRUBBER_MODEL_DIR=/opt/scrubber/models python -c \
       "from scrubber.detect import load_classifier; load_classifier(device='cpu')"

RUN useradd --create-home --uid 10001 scrubber \
    && mkdir -p /data \
    && chown scrubber /data
USER scrubber
ENV SCRUBBER_HOME=/data/home \
    SCRUBBER_MODEL_DIR=/opt/scrubber/models \
    ORT_DISABLE_TELEMETRY=1
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"
ENTRYPOINT ["scrubber", "serve", "--host", "0.0.0.0", "--port", "8000", "--device", "cuda", \
            "--out", "/data/out", "--quarantine", "/data/quarantine", "--root", "/data/in"]
CMD ["--project", "SCRUBBER"]
