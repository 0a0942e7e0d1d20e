FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
RUN pip install --no-cache-dir .
COPY Procfile ./
RUN useradd --create-home monid
USER monid
EXPOSE 8000
CMD ["gunicorn", "--config", "api/gunicorn_conf.py", "api.wsgi:app"]
