"""WSGI entry point for a server of your own (``packyard serve`` needs none of it).

``packyard serve`` runs uWSGI with settings that matter (app/serving.py): kept-alive
connections, chunked uploads, an unread body read before the answer, timeouts. Bring those
along if you serve ``wsgi:app`` yourself.
"""

from app import create_app
from app.config import load_env_file

load_env_file()
app = create_app()
