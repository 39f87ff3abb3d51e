from __future__ import annotations

from django.urls import path

from jobs.views import history, jobs, overview, studies, uploads

app_name = "jobs"

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("nodes/control/", overview.node_control, name="node-control"),
    path("history/", history.job_list, name="list"),
    path("history/export.csv", history.job_export_csv, name="export"),
    path("history/compare/", history.job_compare, name="compare"),
    path("history/compare/runs/", history.job_compare_runs, name="compare-runs"),
    path("jobs/new/", jobs.job_new, name="new"),
    path("jobs/<int:job_id>/", jobs.job_detail, name="detail"),
    path("jobs/<int:job_id>/summary/", jobs.job_summary, name="summary"),
    path("jobs/<int:job_id>/cancel/", jobs.job_cancel, name="cancel"),
    path("jobs/<int:job_id>/retry/", jobs.job_retry, name="retry"),
    path("jobs/<int:job_id>/delete/", jobs.job_delete, name="delete"),
    path("jobs/<int:job_id>/scaling/", studies.study_create, name="study-create"),
    path("studies/", studies.study_list, name="studies"),
    path("studies/<int:study_id>/", studies.study_detail, name="study"),
    path("studies/<int:study_id>/cancel/", studies.study_cancel, name="study-cancel"),
    path("studies/<int:study_id>/export.csv", studies.study_export_csv, name="study-export-csv"),
    path("studies/<int:study_id>/export.json", studies.study_export_json, name="study-export-json"),
    path("uploads/", uploads.upload_list, name="uploads"),
    path("uploads/<int:upload_id>/delete/", uploads.upload_delete, name="upload-delete"),
]
