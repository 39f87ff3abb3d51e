from __future__ import annotations

from django.urls import path

from jobs.api import jobs as api
from jobs.api import kinds as api_kinds
from jobs.api import schedules as api_schedules
from jobs.api import studies as api_studies
from jobs.api import sweeps as api_sweeps

urlpatterns = [
    path("jobs/", api.JobListCreate.as_view(), name="api-jobs"),
    path("jobs/preview/", api.JobPreview.as_view(), name="api-job-preview"),
    path("jobs/export.csv", api.JobExportCsv.as_view(), name="api-jobs-export-csv"),
    path("jobs/<int:job_id>/", api.JobDetail.as_view(), name="api-job"),
    path("jobs/<int:job_id>/cancel/", api.JobCancel.as_view(), name="api-job-cancel"),
    path("jobs/<int:job_id>/retry/", api.JobRetry.as_view(), name="api-job-retry"),
    path("jobs/<int:job_id>/rerun/", api.JobRerun.as_view(), name="api-job-rerun"),
    path("jobs/<int:job_id>/chunks/", api.JobChunks.as_view(), name="api-job-chunks"),
    path("jobs/<int:job_id>/chunks/<int:index>/", api.ChunkDetail.as_view(), name="api-job-chunk"),
    path(
        "jobs/<int:job_id>/chunks/<int:index>/preview/",
        api.ChunkPreview.as_view(),
        name="api-chunk-preview",
    ),
    path(
        "jobs/<int:job_id>/chunks/<int:index>/output/",
        api.ChunkOutput.as_view(),
        name="api-job-chunk-output",
    ),
    path("jobs/<int:job_id>/output/", api.JobOutput.as_view(), name="api-job-output"),
    path("jobs/<int:job_id>/resources/", api.JobResources.as_view(), name="api-job-resources"),
    path("jobs/<int:job_id>/result-file/", api.JobResultFile.as_view(), name="api-job-result-file"),
    path("uploads/", api.UploadListCreate.as_view(), name="api-uploads"),
    path("uploads/<int:upload_id>/", api.UploadDetail.as_view(), name="api-upload"),
    path("kinds/", api_kinds.KindList.as_view(), name="api-kinds"),
    path("schedules/", api_schedules.ScheduleListCreate.as_view(), name="api-schedules"),
    path(
        "schedules/<int:schedule_id>/",
        api_schedules.ScheduleDetail.as_view(),
        name="api-schedule",
    ),
    path("studies/", api_studies.StudyListCreate.as_view(), name="api-studies"),
    path("studies/<int:study_id>/", api_studies.StudyDetail.as_view(), name="api-study"),
    path(
        "studies/<int:study_id>/cancel/",
        api_studies.StudyCancel.as_view(),
        name="api-study-cancel",
    ),
    path(
        "studies/<int:study_id>/export.csv",
        api_studies.StudyExportCsv.as_view(),
        name="api-study-export-csv",
    ),
    path("sweeps/", api_sweeps.SweepListCreate.as_view(), name="api-sweeps"),
    path("sweeps/<int:sweep_id>/", api_sweeps.SweepDetail.as_view(), name="api-sweep"),
    path(
        "sweeps/<int:sweep_id>/cancel/", api_sweeps.SweepCancel.as_view(), name="api-sweep-cancel"
    ),
    path(
        "sweeps/<int:sweep_id>/export.csv",
        api_sweeps.SweepExportCsv.as_view(),
        name="api-sweep-export-csv",
    ),
]
