from __future__ import annotations

from django.urls import path

from jobs.sockets.consumers import JobConsumer, OverviewConsumer

websocket_urlpatterns = [
    path("ws/overview/", OverviewConsumer.as_asgi(), name="overview-socket"),
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi(), name="job-socket"),
]
# So that `reverse(name, urlconf="jobs.sockets.routing")` (the `socket_url` template tag) finds the
# routes by name: pages read their socket's path from the page, never spell it out.
urlpatterns = websocket_urlpatterns
