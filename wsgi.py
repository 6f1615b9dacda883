"""WSGI entry point: ``uwsgi --http11-socket :8080 --module wsgi:app`` (or any WSGI server)."""

from app import create_app
from app.config import load_env_file

load_env_file()
app = create_app()
