"""WSGI entry point: `gunicorn exampleapp.wsgi:application -b HOST:PORT`, run from docker/examples/django."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleapp.settings")

application = get_wsgi_application()
