from __future__ import annotations

from django.urls import path

from jobs.views import history, jobs, overview

app_name = "jobs"

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("history/", history.job_list, name="list"),
    path("jobs/new/", jobs.job_new, name="new"),
    path("jobs/<int:job_id>/", jobs.job_detail, name="detail"),
    path("jobs/<int:job_id>/cancel/", jobs.job_cancel, name="cancel"),
]
