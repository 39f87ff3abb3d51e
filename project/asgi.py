"""ASGI entry point: Django views over HTTP, Channels consumers over websockets."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Initialise Django (apps, models) before importing anything that touches the ORM.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from jobs.middleware import RequestBodyLimit  # noqa: E402
from jobs.sockets.backlog import WriteBacklog  # noqa: E402
from jobs.sockets.guards import ExactOriginValidator  # noqa: E402
from jobs.sockets.routing import websocket_urlpatterns  # noqa: E402
from tokens.authentication import TokenAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": RequestBodyLimit(django_asgi_app, settings.COREBOARD_UPLOAD_MAX_BYTES),
        # The exact origin (scheme, host, port), as Django's CSRF check wants for a POST;
        # outermost, the probe of daphne's write buffer (a slow reader's bound).
        "websocket": WriteBacklog(
            ExactOriginValidator(
                AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
            )
        ),
    }
)
