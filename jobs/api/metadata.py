"""What `OPTIONS` answers on every API route: the methods, formats and where the shapes are.

DRF's default (SimpleMetadata) describes a POST or PUT body by walking the view's serializer
fields. Our views build and check their JSON with jobs/protocol.py and plain serializers,
some with no fields at all (`JobSerializer` only renders), and views without a
`serializer_class` fail its assertion: OPTIONS answered 500 on five routes. The shapes are
documented once, in the OpenAPI schema (/api/schema/); OPTIONS points there rather than
keeping a second, partial description.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.urls import reverse
from rest_framework.metadata import BaseMetadata

if TYPE_CHECKING:
    # rest_framework.views imports this module (the setting) while it defines APIView.
    from rest_framework.request import Request
    from rest_framework.views import APIView


class ApiMetadata(BaseMetadata):
    def determine_metadata(self, request: Request, view: APIView) -> dict[str, Any]:
        return {
            "name": view.get_view_name(),
            "description": view.get_view_description(),
            "methods": [method for method in view.allowed_methods if method != "OPTIONS"],
            "renders": [renderer.media_type for renderer in view.renderer_classes],
            "parses": [parser.media_type for parser in view.parser_classes],
            "schema": request.build_absolute_uri(reverse("api-schema")),
        }
