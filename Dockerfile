# Liaison Desk: the wheel, on python:3.11-slim, as a non-root user (docs/deployment.md).
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim
COPY constraints.txt /tmp/constraints.txt
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir -c /tmp/constraints.txt /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels /tmp/constraints.txt \
    && useradd --create-home --home-dir /var/lib/liaison-desk liaison
USER liaison
# A SQLite database (DATABASE_URL unset) goes to data/ here; compose uses PostgreSQL.
# data/audit (AUDIT_ARCHIVE_DIR) is made here so a volume mounted on it is the user's.
WORKDIR /var/lib/liaison-desk
RUN mkdir -p data/audit
HEALTHCHECK --interval=30s --timeout=20s --start-period=30s --retries=3 \
    CMD ["python", "-m", "bot", "check"]
CMD ["python", "-m", "bot", "run"]
