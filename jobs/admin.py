"""Read-mostly admin: inspect jobs and chunks; state changes go through the app's services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from jobs import services
from jobs.models import Chunk, Job, ScalingStudy
from jobs.services import studies

_M = TypeVar("_M", bound=Model)


class ReadOnlyAdmin(admin.ModelAdmin[_M]):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin[Job]):
    """Deleting and cancelling use the services, with their rules: an active job cannot be
    deleted (cancel it first), and a deleted job takes its result file with it."""

    list_display = ["id", "kind", "owner", "status", "done_chunks", "total_chunks", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["=id", "kind", "owner__username"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    exclude = ["result_file", "cpu_seconds"]
    readonly_fields = ["result_file_link", "cpu_seconds_rounded"]

    @admin.display(description="Result file")
    def result_file_link(self, job: Job) -> str:
        # Files are served by the API (with its permission check), not from MEDIA_URL.
        if not job.result_file:
            return "—"
        return format_html(
            '<a href="{}">Download</a>', reverse("api-job-result-file", args=[job.pk])
        )

    @admin.display(description="CPU seconds", ordering="cpu_seconds")
    def cpu_seconds_rounded(self, job: Job) -> str:
        return f"{job.cpu_seconds:.3f}"

    actions = ["cancel_jobs"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_active:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Job) -> None:
        try:
            services.job_delete(job=obj)
        except services.Refused as refused:
            for message in refused.messages:
                self.message_user(request, message, messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        refused = [job.pk for job in queryset if not _done(services.job_delete, job=job)]
        if refused:
            self.message_user(
                request,
                f"Not deleted, still active (cancel them first): {', '.join(map(str, refused))}.",
                messages.ERROR,
            )

    @admin.action(description="Cancel selected jobs", permissions=["delete"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        cancelled = sum(_done(services.job_cancel, job=job) for job in queryset)
        self.message_user(request, f"Cancelled {cancelled} job(s).")


def _done(action: Callable[..., object], **target: Any) -> bool:
    """Whether a service action went through (False on its refusal)."""
    try:
        action(**target)
    except services.Refused:
        return False
    return True


@admin.register(Chunk)
class ChunkAdmin(ReadOnlyAdmin[Chunk]):
    list_display = ["id", "job", "index", "status", "attempts", "worker", "pid", "cpu"]
    list_filter = ["status"]
    search_fields = ["=job__id"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]

    @admin.display(description="CPU seconds", ordering="cpu_seconds")
    def cpu(self, chunk: Chunk) -> str:
        return "—" if chunk.cpu_seconds is None else f"{chunk.cpu_seconds:.3f}"

    # A chunk belongs to its job's accounting: it goes only with its job (the permission
    # stays, since deleting a job cascades to its chunks), never on its own.
    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        raise PermissionDenied("Chunks are deleted with their job.")


@admin.register(ScalingStudy)
class ScalingStudyAdmin(ReadOnlyAdmin[ScalingStudy]):
    """Cancelling goes through the service, which also cancels the study's running run."""

    list_display = ["id", "kind", "owner", "status", "levels", "created_at", "finished_at"]
    list_filter = ["status", "kind"]
    search_fields = ["=id", "kind", "owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["source"]
    actions = ["cancel_studies"]

    @admin.action(description="Cancel selected studies", permissions=["delete"])
    def cancel_studies(self, request: HttpRequest, queryset: QuerySet[ScalingStudy]) -> None:
        cancelled = sum(_done(studies.study_cancel, study=study) for study in queryset)
        self.message_user(request, f"Cancelled {cancelled} scaling study(ies).")
