"""JSON API (DRF): parse, call a service or selector, respond with the shared job shape."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from redis.exceptions import RedisError
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from jobs import kinds, protocol, services
from jobs.api import openapi
from jobs.forms import history_filter_form
from jobs.kinds.base import params_from_form_values
from jobs.models import Job
from jobs.options import chunk_time_limit_field, parallelism_field
from jobs.protocol import JobApiState
from jobs.selectors import jobs as selectors
from jobs.selectors import output as output_selectors
from jobs.services import admission, quotas, uploads

logger = logging.getLogger(__name__)


class JobCreateSerializer(serializers.Serializer[Any]):
    kind = serializers.CharField(max_length=64)
    params = serializers.DictField(required=False, default=dict)
    # Taken as sent: job_plan accepts a JSON integer only (DRF's IntegerField would take
    # "12" and full-width digits).
    parallelism = serializers.JSONField(required=False, allow_null=True, default=None)
    chunk_time_limit_s = serializers.JSONField(required=False, allow_null=True, default=None)
    priority = serializers.JSONField(required=False, allow_null=True, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        data = self.initial_data
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        if unknown:
            expected = ", ".join(self.fields)
            raise serializers.ValidationError(
                {name: [f"Unknown field; expected one of: {expected}."] for name in unknown}
            )
        return attrs


class PersonRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle for requests that start no work (previews, uploads): a person's
    request spends from the same budget as the pages' (jobs.services.admission.rate_take,
    under the person's lock, refused with the same words); anonymous ones, which these
    views refuse anyway, are counted by address as DRF does. Lets requests through while
    the cache (Redis) does not answer: a Redis outage must not turn them into 500s."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        scope = getattr(view, "throttle_scope", None)
        if scope is not None and request.user.is_authenticated:
            admission.rate_take(person=request.user, scope=admission.Scope(scope))
            return True
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError) as error:
            logger.warning("throttle cache unavailable (%s); letting the request through", error)
            return True


class PostThrottled(APIView):
    """Throttles POST only (rates by `throttle_scope`, see settings), so reads stay free.

    Views that start work (create, retry, rerun, studies) have no throttle here: their
    service spends the person's rate in its admission (jobs.services.admission)."""

    throttle_classes = [PersonRateThrottle]

    def get_throttles(self) -> list[Any]:
        return super().get_throttles() if self.request.method == "POST" else []


class JobSerializer(serializers.BaseSerializer[Job]):
    def to_representation(self, instance: Job) -> JobApiState:
        return selectors.job_as_api_dict(instance)


class JobListCreate(GenericAPIView[Job]):
    serializer_class = JobSerializer

    def get_queryset(self) -> Any:
        status_filter = self.request.query_params.get("status")
        return selectors.job_history(
            user=self.request.user,
            status=status_filter if status_filter in Job.Status.values else None,
        )

    @openapi.job_list
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset()) or []
        return self.get_paginated_response(selectors.jobs_as_api_dicts(list(page)))

    @openapi.job_create
    def post(self, request: Request) -> Response:
        incoming = JobCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        job = services.job_create(owner=request.user, by=request.user, **incoming.validated_data)
        return Response(selectors.job_as_api_dict(job), status=status.HTTP_201_CREATED)


class JobExportCsv(APIView):
    """Your jobs' history as CSV: the history page's export, with its filters as query
    parameters (invalid ones are a 400, by field); at most COREBOARD_EXPORTS_PER_PERSON
    stream at once per person (one more: 429, by field)."""

    @openapi.job_export_csv
    def get(self, request: Request) -> StreamingHttpResponse:
        form = history_filter_form(request.query_params, user=request.user)
        if not form.is_valid():
            raise services.Rejected(
                {name: [str(error) for error in errors] for name, errors in form.errors.items()}
            )
        export = services.history_export_open(
            person=request.user,
            filters=form.filters(),
            asynchronous=isinstance(request._request, ASGIRequest),
        )
        return StreamingHttpResponse(
            export,
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="coreboard-history.csv"'},
        )


class JobPreview(PostThrottled):
    """How many chunks a job would have and its estimated CPU seconds, with the quotas they
    count against: the body of a creation, validated, nothing stored.

    With `?form=1` (the new-job page's live count) parameter values may be the strings a
    form holds; they are converted by the kind's form fields first.
    """

    throttle_scope = "job-preview"

    @openapi.job_preview
    def post(self, request: Request) -> Response:
        incoming = JobCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = dict(incoming.validated_data)
        if request.query_params.get("form") == "1":
            data["params"], data["parallelism"] = _form_values(
                data["kind"], data["params"], data["parallelism"]
            )
            data["chunk_time_limit_s"] = _option_form_value(
                "chunk_time_limit_s", chunk_time_limit_field(), data["chunk_time_limit_s"]
            )
        plan = services.job_plan(owner=request.user, **data)
        preview = quotas.cost_preview(owner=request.user, cost=plan.cost)
        return Response({"chunks": len(plan.specs), **preview})


def _form_values(kind: str, params: dict[str, Any], parallelism: Any) -> tuple[Any, Any]:
    """A form's strings as JSON values; Rejected by field when one is not."""
    try:
        fields = kinds.get(kind).form_class.base_fields
    except kinds.UnknownKind:
        return params, parallelism
    try:
        typed = params_from_form_values(fields, params)
    except ValidationError as error:
        raise services.Rejected({"params": error.message_dict}) from None
    return typed, _option_form_value("parallelism", parallelism_field(), parallelism)


def _option_form_value(name: str, field: forms.Field, value: Any) -> Any:
    """A job option as the new-job page's form holds it (a string), as its JSON value (then
    the services check it as any other); Rejected by field when it is not one."""
    if not isinstance(value, str):
        return value
    try:
        return params_from_form_values({name: field}, {name: value})[name]
    except ValidationError as error:
        raise services.Rejected({name: error.messages}) from None


class _OwnJobView(GenericAPIView[Any]):
    def get_job(self, job_id: int) -> Job:
        return selectors.job_get_for_user(user=self.request.user, job_id=job_id)

    def job_action(self, action: Callable[..., Job], job_id: int, **extra: Any) -> Response:
        """A service action on a visible job: its new state (a refusal raises: a 409)."""
        job = action(job=self.get_job(job_id), **extra)
        return Response(selectors.job_as_api_dict(job))


class JobDetail(_OwnJobView):
    @openapi.job_retrieve
    def get(self, request: Request, job_id: int) -> Response:
        return Response(selectors.job_as_api_dict(self.get_job(job_id)))

    @openapi.job_delete
    def delete(self, request: Request, job_id: int) -> Response:
        services.job_delete(job=self.get_job(job_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobCancel(_OwnJobView):
    @openapi.job_cancel
    def post(self, request: Request, job_id: int) -> Response:
        return self.job_action(services.job_cancel, job_id)


class JobRetry(_OwnJobView):
    @openapi.job_retry
    def post(self, request: Request, job_id: int) -> Response:
        return self.job_action(services.job_retry_failed, job_id, by=request.user)


class JobRerun(_OwnJobView):
    @openapi.job_rerun
    def post(self, request: Request, job_id: int) -> Response:
        job = services.job_rerun(job=self.get_job(job_id), owner=request.user, by=request.user)
        return Response(selectors.job_as_api_dict(job), status=status.HTTP_201_CREATED)


class JobChunks(_OwnJobView):
    @openapi.job_chunks
    def get(self, request: Request, job_id: int) -> Response:
        chunks = selectors.job_chunks(self.get_job(job_id))
        page = self.paginate_queryset(chunks) or []
        return self.get_paginated_response([protocol.chunk_state(c) for c in page])


class ChunkDetail(_OwnJobView):
    @openapi.job_chunk
    def get(self, request: Request, job_id: int, index: int) -> Response:
        return Response(selectors.job_chunk_get(job=self.get_job(job_id), index=index))


class ChunkOutput(_OwnJobView):
    @openapi.chunk_output
    def get(self, request: Request, job_id: int, index: int) -> Response:
        raw = request.query_params.get("offset")
        if raw is not None and not (raw.isascii() and raw.isdigit()):
            raise services.Rejected({"offset": ["A byte offset: a whole number, 0 or more."]})
        job = self.get_job(job_id)
        offset = int(raw) if raw is not None else None
        return Response(output_selectors.chunk_output(job=job, index=index, offset=offset))


class JobOutput(_OwnJobView):
    @openapi.job_output
    def get(self, request: Request, job_id: int) -> Response:
        return Response(output_selectors.job_output(job=self.get_job(job_id)))


class JobResources(_OwnJobView):
    @openapi.job_resources
    def get(self, request: Request, job_id: int) -> Response:
        return Response(output_selectors.job_resources(job=self.get_job(job_id)))


class ResultFileUnreadable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "result_file_unreadable"


class JobResultFile(_OwnJobView):
    @openapi.job_result_file
    def get(self, request: Request, job_id: int) -> FileResponse:
        job = self.get_job(job_id)
        if not job.result_file:
            raise Http404("This job has no result file.")
        try:
            handle = job.result_file.open("rb")
        except FileNotFoundError:
            raise Http404("This job's result file is missing from MEDIA_ROOT.") from None
        except OSError as error:
            # Not a 500: the file is there, the web's user may not read it (a worker that
            # ran as another user wrote it); the operator can fix that, and must be told.
            logger.warning("result file of job %s unreadable: %s", job.pk, error)
            raise ResultFileUnreadable(
                f"The result file of job {job.pk} exists but this server cannot read it "
                f"({error.strerror or error}). A worker that ran as another user wrote it: "
                "restart `make run` (it gives MEDIA_ROOT back to the service user), and start "
                "workers with `make worker`, which runs them as that user."
            ) from None
        return FileResponse(
            handle,
            as_attachment="download" in request.query_params,
            filename=Path(job.result_file.name).name,
        )


class ChunkPreview(_OwnJobView):
    @openapi.chunk_preview
    def get(self, request: Request, job_id: int, index: int) -> HttpResponse:
        job = self.get_job(job_id)
        preview = selectors.chunk_preview(job=job, index=index)
        if preview is None:
            raise Http404("No preview for this chunk (yet).")
        response = HttpResponse(preview.data, content_type=preview.content_type)
        response["Cache-Control"] = "private, max-age=3600"
        return response


class UploadListCreate(PostThrottled, GenericAPIView[Any]):
    """GET: one's uploads, newest first, paginated; POST: upload a file (multipart)."""

    parser_classes = [MultiPartParser]
    throttle_scope = "upload"
    serializer_class = openapi.UploadListItem

    @openapi.upload_list
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.uploads_of(request.user)) or []
        return self.get_paginated_response([uploads.upload_list_item(u) for u in page])

    @openapi.upload_create
    def post(self, request: Request) -> Response:
        file = request.FILES.get("file")
        if file is None:
            raise services.Rejected(
                {"file": ["Send the file as multipart form data in the field `file`."]}
            )
        upload = services.upload_create(owner=request.user, file=file)
        return Response(protocol.upload_state(upload), status=status.HTTP_201_CREATED)


class UploadDetail(APIView):
    @openapi.upload_delete
    def delete(self, request: Request, upload_id: int) -> Response:
        upload = selectors.upload_get_for_user(user=request.user, upload_id=upload_id)
        uploads.upload_delete(upload=upload)
        return Response(status=status.HTTP_204_NO_CONTENT)
