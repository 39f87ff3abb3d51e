"""Read-mostly admin: inspect jobs and chunks; state changes go through the app's services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from jobs.models import Chunk, Job


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
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


@admin.register(Chunk)
class ChunkAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "index", "status", "attempts", "worker", "pid", "cpu"]
    list_filter = ["status"]
    search_fields = ["=job__id"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]

    @admin.display(description="CPU seconds", ordering="cpu_seconds")
    def cpu(self, chunk: Chunk) -> str:
        return "—" if chunk.cpu_seconds is None else f"{chunk.cpu_seconds:.3f}"
