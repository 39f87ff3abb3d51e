"""Read-mostly admin: inspect jobs and chunks; state changes go through the app's services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

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


@admin.register(Chunk)
class ChunkAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "index", "status", "attempts", "worker", "pid", "cpu_seconds"]
    list_filter = ["status"]
    search_fields = ["=job__id"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]
