# Image for the "allocation" service.
#
# One image serves every role; the command picks the role:
#   allocation api --host 0.0.0.0 --port 5005   (default: the Flask app under granian)
#   allocation consumer                         (Redis event consumer)
#   allocation relay                            (publishes the outbox to Redis)
#   allocation migrate                          (create / upgrade the database schema)
#
# docker-compose.yml runs all of them: `docker compose up --build`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Unprivileged runtime user, created early so that this layer stays cached.
RUN groupadd --system --gid 10001 allocation \
    && useradd --system --uid 10001 --gid allocation \
        --create-home --home-dir /home/allocation \
        --shell /usr/sbin/nologin allocation

WORKDIR /app

# Third-party dependencies in a layer of their own: it is rebuilt only when
# requirements.txt changes, not on every source edit.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The application itself; its dependencies are already installed above.
COPY setup.py ./
COPY src/ ./src/
RUN pip install --no-cache-dir --no-deps .

USER allocation
# A directory the runtime user can write to, so that the built-in SQLite
# default (used when DATABASE_URL is not set) works in a bare `docker run`.
WORKDIR /home/allocation

EXPOSE 5005

# The slim image has no curl: probe with the standard library instead.
# urlopen raises on connection errors and on non-2xx answers, so any
# failure exits non-zero and marks the container unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5005/health', timeout=4)"]

CMD ["allocation", "api", "--host", "0.0.0.0", "--port", "5005"]
