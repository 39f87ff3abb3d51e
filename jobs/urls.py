from __future__ import annotations

from django.urls import path

from jobs.views import history, jobs, notifications, overview, schedules, studies, sweeps, uploads

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
    path("schedules/", schedules.schedule_list, name="schedules"),
    path("schedules/new/", schedules.schedule_new, name="schedule-new"),
    path("schedules/<int:schedule_id>/", schedules.schedule_detail, name="schedule"),
    path("schedules/<int:schedule_id>/toggle/", schedules.schedule_toggle, name="schedule-toggle"),
    path("schedules/<int:schedule_id>/delete/", schedules.schedule_delete, name="schedule-delete"),
    path("sweeps/new/", sweeps.sweep_new, name="sweep-new"),
    path("sweeps/<int:sweep_id>/", sweeps.sweep_detail, name="sweep"),
    path("sweeps/<int:sweep_id>/cancel/", sweeps.sweep_cancel, name="sweep-cancel"),
    path("sweeps/<int:sweep_id>/export.csv", sweeps.sweep_export_csv, name="sweep-export-csv"),
    path("uploads/", uploads.upload_list, name="uploads"),
    path("notifications/", notifications.notification_settings, name="notifications"),
    path("notifications/hooks/<int:hook_id>/test/", notifications.webhook_test, name="hook-test"),
    path(
        "notifications/hooks/<int:hook_id>/delete/",
        notifications.webhook_delete,
        name="hook-delete",
    ),
    path("uploads/<int:upload_id>/delete/", uploads.upload_delete, name="upload-delete"),
]
