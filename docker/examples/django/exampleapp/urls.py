from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("healthz", views.healthz),
    path("api/whoami", views.whoami),
    path("api/cached", views.cached),
    path("api/echo", views.echo),
]
