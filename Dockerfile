# stacbatch in a container: `docker build -t stacbatch .` then
# `docker run --rm -v "$PWD:/data" stacbatch load /data/items.ndjson --stage /data/stage`
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stacbatch ./stacbatch
COPY sql ./sql
RUN pip install .
WORKDIR /data
ENTRYPOINT ["stacbatch"]
CMD ["--help"]
