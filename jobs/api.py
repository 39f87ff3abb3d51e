"""JSON API (DRF): parse, call a service or selector, respond with the shared job shape."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from jobs import selectors, services
from jobs.models import Job


class JobCreateSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=64)
    params = serializers.DictField(required=False, default=dict)
    parallelism = serializers.IntegerField(required=False, allow_null=True)


class JobSerializer(serializers.BaseSerializer):
    def to_representation(self, instance: Job) -> dict[str, Any]:
        return selectors.job_as_dict(instance)


class JobListCreate(GenericAPIView):
    serializer_class = JobSerializer

    def get_queryset(self) -> Any:
        return selectors.job_history(user=self.request.user)

    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset()) or []
        return self.get_paginated_response(JobSerializer(page, many=True).data)

    def post(self, request: Request) -> Response:
        incoming = JobCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            job = services.job_create(owner=request.user, **incoming.validated_data)
        except services.JobRejected as rejected:
            return Response(rejected.errors, status=status.HTTP_400_BAD_REQUEST)
        return Response(selectors.job_as_dict(job), status=status.HTTP_201_CREATED)


class _OwnJobView(GenericAPIView):
    def get_job(self, job_id: int) -> Job:
        job = selectors.job_get_for_user(user=self.request.user, job_id=job_id)
        if job is None:
            raise Http404
        return job


class JobDetail(_OwnJobView):
    def get(self, request: Request, job_id: int) -> Response:
        return Response(selectors.job_as_dict(self.get_job(job_id)))


class JobCancel(_OwnJobView):
    def post(self, request: Request, job_id: int) -> Response:
        job = self.get_job(job_id)
        if not services.job_cancel(job=job):
            return Response(
                {"status": [f"Job {job.pk} has already ended ({job.status}); nothing to cancel."]},
                status=status.HTTP_409_CONFLICT,
            )
        job.refresh_from_db()
        return Response(selectors.job_as_dict(job))


class JobChunks(_OwnJobView):
    def get(self, request: Request, job_id: int) -> Response:
        chunks = selectors.job_chunks(self.get_job(job_id))
        page = self.paginate_queryset(chunks) or []
        return self.get_paginated_response([selectors.chunk_as_dict(c) for c in page])
