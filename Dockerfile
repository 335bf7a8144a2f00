# ctxserve and the demo apps: `docker build -t ctxserve . && docker run -p 8000:8000 ctxserve`
FROM python:3.13-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CTXSERVE_HEALTHCHECK_URL=http://127.0.0.1:9100/healthz

# The package from this source tree (not editable), with gevent (the worker
# of deploy/ctxserve.toml), and what the demo apps need; the source is
# copied aside and removed, so nothing shadows the
# installed package and no build or cache directory stays behind.
COPY pyproject.toml README.md LICENSE /tmp/ctxserve-src/
COPY ctxserve/ /tmp/ctxserve-src/ctxserve/
COPY apps/requirements.txt /tmp/ctxserve-src/apps/
RUN pip install --no-cache-dir --root-user-action=ignore "/tmp/ctxserve-src[gevent]" -r /tmp/ctxserve-src/apps/requirements.txt \
    && rm -rf /tmp/ctxserve-src \
    && useradd --user-group --uid 10001 --create-home --shell /usr/sbin/nologin ctxserve

# The app code and config stay root-owned: the server only reads them.
# gunicorn's control socket is in the server's run directory, under /tmp.
WORKDIR /srv/ctxserve
COPY apps/ apps/
COPY deploy/ deploy/

USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# The admin listener's /healthz (deploy/ctxserve.toml: admin = "127.0.0.1:9100",
# inside the container only), with nothing but Python. Override the URL with
# -e CTXSERVE_HEALTHCHECK_URL=... when the admin listener is elsewhere.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CTXSERVE_HEALTHCHECK_URL'], timeout=4)"]

# Exec form: gunicorn's master is PID 1 and gets SIGTERM itself.
CMD ["ctxserve", "serve", "deploy/ctxserve.toml", "--bind", "0.0.0.0:8000"]
