# One image for every tier: `docker run clusterpedia-py apiserver|synchro|writer|all-in-one ...`.
# Build: docker build -t clusterpedia-py .
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/clusterpedia
WORKDIR /src
COPY pyproject.toml README.md ./
COPY apiserver ./apiserver
COPY synchro ./synchro
COPY writer ./writer
COPY common ./common
COPY cli ./cli
COPY kubestate ./kubestate
RUN /opt/clusterpedia/bin/pip install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/clusterpedia/bin:$PATH
COPY --from=build /opt/clusterpedia /opt/clusterpedia
RUN useradd --uid 10001 --user-group --home-dir /var/lib/clusterpedia --create-home clusterpedia
USER 10001
WORKDIR /var/lib/clusterpedia
EXPOSE 8443 9090
ENTRYPOINT ["clusterpedia"]
CMD ["all-in-one", "--bind-host", "0.0.0.0"]
