"""URLs of the example project."""

from __future__ import annotations

from django.urls import path

from .backend import views

urlpatterns = [
    path("echo/<str:message>", views.echo),
    path("healthz", views.healthz),
]
