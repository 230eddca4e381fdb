from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("realtime/tokens", api.StreamTokenView.as_view(), name="realtime-tokens"),
    path("realtime/poll", api.PollView.as_view(), name="realtime-poll"),
]
