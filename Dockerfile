# scrubber: command-line image. The GPU server image (CUDA, ONNX Runtime GPU) comes with issue 7.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends dicom3tools \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 scrubber
WORKDIR /opt/scrubber
COPY pyproject.toml README.md THIRD_PARTY_NOTICES.md ./
COPY scrubber ./scrubber
RUN pip install --no-cache-dir .

USER scrubber
ENV SCRUBBER_HOME=/home/scrubber/.local/share/scrubber
ENTRYPOINT ["scrubber"]
CMD ["--help"]
