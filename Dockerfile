# Slipway's own image: web, workers and the HAProxy it drives. Build: docker build -t slipway .
# PIP_OPTIONS passes options to pip, e.g. "--no-index --find-links URL" to install downloaded wheels.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends haproxy && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 slipway && mkdir -p /data && chown slipway /data \
    && python3 -m venv /opt/slipway
ENV PATH=/opt/slipway/bin:$PATH
WORKDIR /app
ARG PIP_OPTIONS=""
# torch is installed first, as TORCH_SPEC says (the GPU worker builds with a CUDA-enabled torch).
ARG TORCH_SPEC="torch==2.13.0"
RUN pip install --no-cache-dir $PIP_OPTIONS "${TORCH_SPEC}"
COPY . .
RUN pip install --no-cache-dir $PIP_OPTIONS . && SLIPWAY_DATA_DIR=/tmp/build SLIPWAY_SECRET_KEY=build \
    python manage.py collectstatic --noinput && rm -rf /tmp/build
USER slipway
ENV SLIPWAY_DATA_DIR=/data PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["gunicorn", "slipway.wsgi", "-b", "0.0.0.0:8000", "-w", "4", "--threads", "4"]
