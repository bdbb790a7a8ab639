# The Comeback image: one image for the worker, the API and the one-shot `comeback temporal setup`.
# Built by docker-compose.yml; see docs/deployment.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, so that a code change does not reinstall them all.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The source tree. The install is editable on purpose: the app finds templates/, config/ and
# migrations/ relative to its source files, so they must stay where they are, under /app.
COPY . .
RUN pip install --no-cache-dir -e . \
    && useradd --system --create-home --uid 10001 comeback \
    && mkdir -p /app/.data \
    && chown comeback:comeback /app/.data

USER comeback

EXPOSE 8000
CMD ["comeback", "worker"]
