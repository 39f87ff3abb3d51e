"""GET /api/kinds/: the job kinds and a JSON schema of each one's parameters."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import kinds
from jobs.api import openapi


class KindList(APIView):
    @openapi.kind_list
    def get(self, request: Request) -> Response:
        return Response(
            [
                {
                    "name": kind.name,
                    "label": kind.label,
                    "description": kind.description,
                    "params_schema": openapi.form_json_schema(kind.form_class),
                }
                for kind in kinds.all_kinds()
            ]
        )
