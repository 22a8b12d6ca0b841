# The image every Airflow service of docker-compose.yml runs: Airflow 3.3.2 plus this project.
FROM apache/airflow:3.3.2-python3.11

USER root
COPY --chown=airflow:root requirements.lock pyproject.toml README.md /opt/recs/
COPY --chown=airflow:root rec_models /opt/recs/rec_models
COPY --chown=airflow:root sql /opt/recs/sql
USER airflow
# torch from the CPU wheel index: the default index would pull a multi-GB CUDA build.
# For GPU scoring workers build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir torch==2.13.0 --index-url "${TORCH_INDEX}" \
 && grep -vE '^(apache-airflow|torch)' /opt/recs/requirements.lock > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && pip install --no-cache-dir --no-deps -e /opt/recs
