# Airflow 3.3.2 with the rollback coordinator installed, as docker-compose.yaml runs it.
# NOTE: the base image is pinned by tag only. Pin its digest (@sha256:...) once a registry
# that serves it is at hand, so a rebuilt tag cannot change the image under you.
FROM apache/airflow:3.3.2-python3.11

# Rollback scripts, the audit repository and the git provider all run the git binary.
# The source folder belongs to airflow because pip builds the package inside it.
# git is not version-pinned: Debian's mirrors drop the old version when a security fix
# lands, so a pin breaks the build instead of keeping it reproducible.
USER root
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && install --directory --owner=airflow --group=0 /opt/rollback-coordinator
USER airflow

# Dependencies get their own layer, so a code change does not reinstall them.
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/rollback-coordinator/
RUN pip install --no-cache-dir \
        --requirement /opt/rollback-coordinator/requirements.txt \
        --constraint /opt/rollback-coordinator/constraints.txt

COPY --chown=airflow:0 pyproject.toml /opt/rollback-coordinator/
COPY --chown=airflow:0 include /opt/rollback-coordinator/include
# The dependencies are already in place, so --no-deps keeps this step from resolving again.
# pip check fails the build when the pins above broke a package that the base image ships.
# requirements.txt does not list the Celery provider because the official image ships it
# among its default extras. The last line fails the build if this image does not have it.
RUN pip install --no-cache-dir --no-deps /opt/rollback-coordinator \
    && pip check \
    && pip show apache-airflow-providers-celery > /dev/null
