"""Settings of the example Django app that runs behind Torii.

Everything that depends on the deployment comes from the environment:

  DJANGO_ALLOWED_HOSTS          comma-separated host names clients use (required in practice)
  DJANGO_SECRET_KEY             the secret key (an insecure fixed one is used if unset: examples only)
  DJANGO_CSRF_TRUSTED_ORIGINS   comma-separated origins for CSRF on HTTPS (Django 4+: "https://example.com";
                                Django 3.2, Debian 12: "example.com")

See docs/DEPLOYMENT.md for why each proxy setting is what it is.
"""
import os


def _env_list(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "insecure-example-key-set-DJANGO_SECRET_KEY-in-production"
DEBUG = False

# The Host header clients send. Torii passes it to the upstream unchanged, so
# list the public names here (not the upstream's address).
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")

# Torii sets X-Forwarded-Proto itself on every request ("https" on a TLS
# listener, "http" otherwise), replacing whatever the client sent, so Django
# may trust it: request.is_secure() is then True exactly for HTTPS clients.
# Only safe because the app is reachable through Torii alone.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Torii forwards the client's Host header unchanged, so request.get_host()
# already returns the public host; X-Forwarded-Host adds nothing. Leaving this
# off also means a Host/X-Forwarded-Host mismatch can never change what Django
# thinks its host is.
USE_X_FORWARDED_HOST = False
USE_X_FORWARDED_PORT = False

CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_SECURE = True
# The HTTPS redirect and HSTS are Torii's job (a route's "https_redirect" and "hsts"),
# so `manage.py check --deploy` need not ask for SECURE_SSL_REDIRECT / SECURE_HSTS_SECONDS.
SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]

INSTALLED_APPS = []  # no models, no admin, no sessions: no database
DATABASES = {}
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "exampleapp.urls"
WSGI_APPLICATION = "exampleapp.wsgi.application"
APPEND_SLASH = False

USE_TZ = True
TIME_ZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
