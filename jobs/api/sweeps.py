"""JSON API of sweeps: create one (N jobs over a grid or a list of parameter sets), list,
read, cancel, export as CSV."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api import openapi
from jobs.models import Sweep
from jobs.selectors import sweeps as sweep_selectors
from jobs.services import sweeps

SWEEP_FIELDS = ("kind", "params", "grid", "sets", "parallelism", "chunk_time_limit_s")


class SweepCreateSerializer(serializers.Serializer[Any]):
    # Taken as sent: the service checks every shape and value and names the field.
    kind = serializers.CharField(max_length=64)
    params = serializers.JSONField(required=False, default=None)
    grid = serializers.JSONField(required=False, default=None)
    sets = serializers.JSONField(required=False, default=None)
    parallelism = serializers.JSONField(required=False, default=None)
    chunk_time_limit_s = serializers.JSONField(required=False, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        data = self.initial_data
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        if unknown:
            expected = ", ".join(SWEEP_FIELDS)
            raise serializers.ValidationError(
                {name: [f"Unknown field; expected one of: {expected}."] for name in unknown}
            )
        return attrs


class _SweepView(GenericAPIView[Any]):
    def get_sweep(self, sweep_id: int) -> Sweep:
        sweep = sweep_selectors.sweep_get_for_user(user=self.request.user, sweep_id=sweep_id)
        if sweep is None:
            raise Http404
        return sweep


class SweepListCreate(GenericAPIView[Any]):
    # A sweep spends one job creation of its asker's rate (jobs.services.admission).
    serializer_class = openapi.SweepOut

    @openapi.sweep_list
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(sweep_selectors.sweeps_visible_to(request.user)) or []
        return self.get_paginated_response([sweep_selectors.sweep_as_dict(s) for s in page])

    @openapi.sweep_create
    def post(self, request: Request) -> Response:
        incoming = SweepCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        sweep = sweeps.sweep_create(owner=request.user, by=request.user, **incoming.validated_data)
        return Response(sweep_selectors.sweep_as_dict(sweep), status=status.HTTP_201_CREATED)


class SweepDetail(_SweepView):
    @openapi.sweep_retrieve
    def get(self, request: Request, sweep_id: int) -> Response:
        return Response(sweep_selectors.sweep_as_dict(self.get_sweep(sweep_id)))


class SweepCancel(_SweepView):
    @openapi.sweep_cancel
    def post(self, request: Request, sweep_id: int) -> Response:
        sweep = sweeps.sweep_cancel(sweep=self.get_sweep(sweep_id))
        return Response(sweep_selectors.sweep_as_dict(sweep))


class SweepExportCsv(_SweepView):
    @openapi.sweep_export_csv
    def get(self, request: Request, sweep_id: int) -> HttpResponse:
        sweep = self.get_sweep(sweep_id)
        body = sweep_selectors.sweep_csv(sweep_selectors.sweep_as_dict(sweep))
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
        name = sweep_selectors.sweep_export_name(sweep, "csv")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
