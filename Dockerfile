FROM python:3.13-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md requirements.txt ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
# What a deployment installs: the pinned requirements and the project, without the
# embedded servers of `monidctl up` (the `local` extra).
RUN pip install --no-cache-dir -r requirements.txt
COPY Procfile ./
RUN useradd --create-home monid
USER monid
EXPOSE 8000
CMD ["gunicorn", "--config", "api/gunicorn_conf.py", "api.wsgi:app"]
