# stacbatch in a container: `docker build -t stacbatch .` then
# `docker run --rm -v "$PWD:/data" stacbatch load /data/items.ndjson --stage /data/stage`
# The build stage has a C compiler for the kernel (stacbatch/kernel/_kernel.c); the image has only the wheel.
FROM python:3.12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY stacbatch ./stacbatch
COPY sql ./sql
RUN pip wheel --no-deps -w /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
WORKDIR /data
ENTRYPOINT ["stacbatch"]
CMD ["--help"]
