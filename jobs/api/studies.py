"""JSON API of scaling studies: start one from a job, read it, cancel it, export it."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api import openapi
from jobs.models import ScalingStudy
from jobs.selectors import jobs as selectors
from jobs.selectors import studies as study_selectors
from jobs.services import Rejected, studies


class StudyCreateSerializer(serializers.Serializer[Any]):
    # Taken as sent and checked below: DRF's IntegerField would take "12" and full-width digits.
    job = serializers.JSONField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        data = self.initial_data
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown field; expected one of: job."] for name in unknown}
            )
        job = attrs["job"]
        if isinstance(job, bool) or not isinstance(job, int) or job < 0:
            raise serializers.ValidationError({"job": ["Must be the id (an integer) of a job."]})
        return attrs


class _OwnStudyView(GenericAPIView[Any]):
    def get_study(self, study_id: int) -> ScalingStudy:
        study = study_selectors.study_get_for_user(user=self.request.user, study_id=study_id)
        if study is None:
            raise Http404
        return study


class StudyListCreate(GenericAPIView[Any]):
    # Each study creates jobs: its service spends a job creation (jobs.services.admission).
    serializer_class = openapi.StudyOut

    @openapi.study_list
    def get(self, request: Request) -> Response:
        studies = study_selectors.studies_of(request.user).prefetch_related("runs")
        page = self.paginate_queryset(studies) or []
        return self.get_paginated_response([study_selectors.study_as_dict(s) for s in page])

    @openapi.study_create
    def post(self, request: Request) -> Response:
        incoming = StudyCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        job_id = incoming.validated_data["job"]
        try:
            job = selectors.job_get_for_user(user=request.user, job_id=job_id)
        except Http404:
            raise Rejected({"job": [f"No job with id {job_id} of yours."]}) from None
        study = studies.study_create(owner=request.user, job=job, by=request.user)
        return Response(study_selectors.study_as_dict(study), status=status.HTTP_201_CREATED)


class StudyDetail(_OwnStudyView):
    @openapi.study_retrieve
    def get(self, request: Request, study_id: int) -> Response:
        return Response(study_selectors.study_as_dict(self.get_study(study_id)))


class StudyCancel(_OwnStudyView):
    @openapi.study_cancel
    def post(self, request: Request, study_id: int) -> Response:
        study = studies.study_cancel(study=self.get_study(study_id))
        return Response(study_selectors.study_as_dict(study))


class StudyExportCsv(_OwnStudyView):
    @openapi.study_export_csv
    def get(self, request: Request, study_id: int) -> HttpResponse:
        study = self.get_study(study_id)
        response = HttpResponse(study_selectors.study_csv(study), content_type="text/csv")
        name = study_selectors.study_export_name(study, "csv")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
