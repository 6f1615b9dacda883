"""WSGI entry point: ``gunicorn wsgi:app``."""

from app import create_app
from app.config import load_env_file

load_env_file()
app = create_app()
