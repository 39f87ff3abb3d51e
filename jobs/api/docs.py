"""/api/docs/: Swagger UI under the site's Content-Security-Policy.

drf-spectacular's default page runs its initializer as an inline <script> and styles itself
with an inline <style>; the site's policy (script-src and style-src 'self', no
'unsafe-inline') blocks both and the page was blank. The split view serves the initializer
as a script from this same URL (`?script`), Swagger UI's files come from
drf-spectacular-sidecar's static files, and our template moves the styles to a stylesheet.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework.request import Request
from rest_framework.response import Response


class ApiDocs(SpectacularSwaggerSplitView):
    template_name = "api/docs.html"

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # drf-spectacular leaves its views unannotated.
        response: Response = super().get(request, *args, **kwargs)  # type: ignore[no-untyped-call]
        if request.GET.get("script") is not None:
            # The initializer holds the visitor's CSRF token: no other origin, same-site
            # ones included, may load it with <script src> and read it (cross-site script
            # inclusion); and no cache keeps it.
            response["Cross-Origin-Resource-Policy"] = "same-origin"
            response["Cache-Control"] = "no-store, private"
        return response

    @extend_schema(exclude=True)
    def options(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        # A page, not an API resource: Django's plain answer (Allow), not DRF's metadata,
        # which the page's only renderer (HTML from a template) cannot render: a 500.
        methods = ", ".join(method for method in self.allowed_methods)
        return HttpResponse(headers={"Allow": methods}, content_type="text/plain")
