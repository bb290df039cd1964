"""Views that show what a Django app behind Torii sees."""
import hashlib
import itertools
import os
import time

from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

_cached_renders = itertools.count(1)  # per gunicorn worker process


@require_GET
def index(request):
    return JsonResponse({"app": "torii-django-example", "endpoints": [
        "GET /api/whoami", "GET /api/cached", "POST /api/echo", "GET /healthz"]})


@require_GET
def healthz(request):
    return HttpResponse("ok\n", content_type="text/plain")


def _client_ip(request):
    """The client's address: the last X-Forwarded-For entry, which Torii appends (the address
    of whoever connected to Torii). Earlier entries come from the client and prove nothing."""
    xff = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [h.strip() for h in xff.split(",") if h.strip()]
    return hops[-1] if hops else request.META.get("REMOTE_ADDR")


def whoami(request):
    """What the app saw: the host and scheme Django derives, and the proxy headers as received."""
    meta = request.META
    return JsonResponse({
        "method": request.method,
        "path": request.path,
        "query": meta.get("QUERY_STRING", ""),
        "host": request.get_host(),
        "scheme": request.scheme,
        "is_secure": request.is_secure(),
        "absolute_uri": request.build_absolute_uri(),
        "remote_addr": meta.get("REMOTE_ADDR"),
        "client_ip": _client_ip(request),
        "x_forwarded_for": meta.get("HTTP_X_FORWARDED_FOR"),
        "x_forwarded_proto": meta.get("HTTP_X_FORWARDED_PROTO"),
        "x_forwarded_host": meta.get("HTTP_X_FORWARDED_HOST"),
        "x_request_id": meta.get("HTTP_X_REQUEST_ID"),
        "via": meta.get("HTTP_VIA"),
        "pid": os.getpid(),
    })


@require_GET
@cache_control(public=True, max_age=60)
def cached(request):
    """A shared-cacheable answer (Cache-Control: public, max-age=60). `render` counts how often
    this worker process rendered it: a response from Torii's cache repeats the number."""
    return JsonResponse({"render": next(_cached_renders), "pid": os.getpid(), "rendered_at": time.time()})


def _body_stream(request):
    """The request body as a stream. Django reads exactly CONTENT_LENGTH bytes, so a chunked
    body (no Content-Length; Torii forwards it chunked) reads as empty. gunicorn de-chunks it and
    says so with wsgi.input_terminated: then the WSGI input itself ends where the body ends."""
    if not request.META.get("CONTENT_LENGTH") and request.META.get("wsgi.input_terminated"):
        return request.META["wsgi.input"]
    return request


@csrf_exempt  # an API endpoint for non-browser clients: no CSRF cookie/token
@require_POST
def echo(request):
    """Reads the body as a stream (Content-Length or chunked) and returns its length and SHA-256."""
    stream = _body_stream(request)
    digest = hashlib.sha256()
    length = 0
    while True:
        chunk = stream.read(64 * 1024)
        if not chunk:
            break
        digest.update(chunk)
        length += len(chunk)
    return JsonResponse({"length": length, "sha256": digest.hexdigest(),
                         "content_type": request.content_type})
