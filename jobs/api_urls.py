from __future__ import annotations

from django.urls import path

from jobs import api

urlpatterns = [
    path("jobs/", api.JobListCreate.as_view(), name="api-jobs"),
    path("jobs/<int:job_id>/", api.JobDetail.as_view(), name="api-job"),
    path("jobs/<int:job_id>/cancel/", api.JobCancel.as_view(), name="api-job-cancel"),
    path("jobs/<int:job_id>/chunks/", api.JobChunks.as_view(), name="api-job-chunks"),
    path(
        "jobs/<int:job_id>/chunks/<int:index>/preview/",
        api.ChunkPreview.as_view(),
        name="api-chunk-preview",
    ),
    path("jobs/<int:job_id>/result-file/", api.JobResultFile.as_view(), name="api-job-result-file"),
    path("uploads/", api.UploadCreate.as_view(), name="api-uploads"),
]
