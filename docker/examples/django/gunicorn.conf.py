"""gunicorn settings, read automatically from the folder gunicorn starts in
(`gunicorn exampleapp.wsgi:application -b HOST:PORT` from docker/examples/django).

Threaded workers, because gunicorn's default sync workers close the connection
after every response, so Torii's upstream pool could never reuse one. The
keep-alive timeout is longer than Torii's upstream `pool.idle_timeout`
(60 s by default): the proxy must be the side that closes an idle
connection, or a request can be sent on a connection gunicorn is just
closing. See docs/DEPLOYMENT.md.
"""
import os

worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))

# gunicorn itself honours X-Forwarded-Proto only from these peers (default 127.0.0.1);
# Django's SECURE_PROXY_SSL_HEADER does the same job for the app, so this only affects
# gunicorn's own view (wsgi.url_scheme). Set it to Torii's address in a container network.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s rid=%({x-request-id}i)s xff="%({x-forwarded-for}i)s" %(L)ss'
