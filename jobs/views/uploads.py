"""One's uploads: list them, upload one, delete the ones no active job reads."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from jobs import services
from jobs.forms import UploadForm
from jobs.selectors import jobs as selectors
from jobs.services import Refused, uploads
from jobs.views import refusals


@require_http_methods(["GET", "HEAD", "POST"])
def upload_list(request: HttpRequest) -> HttpResponse:
    """GET lists one's uploads; POST stores one (the same service as the API's upload)."""
    form = UploadForm()
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                upload = services.upload_create(owner=request.user, file=form.cleaned_data["file"])
            except Refused as refused:
                refusals.form_add_refusal(refused, form)
            else:
                messages.success(request, f"Uploaded {upload.name!r}.")
                return redirect("jobs:uploads")
    mine = selectors.uploads_of(request.user)
    return render(
        request,
        "jobs/upload_list.html",
        {
            "uploads": [uploads.upload_list_item(upload) for upload in mine],
            "total_bytes": mine.aggregate(total=Sum("size"))["total"] or 0,
            "quota_count": settings.COREBOARD_QUOTA_UPLOADS,
            "quota_bytes": settings.COREBOARD_QUOTA_UPLOAD_BYTES,
            "form": form,
        },
        status=400 if form.errors else 200,
    )


@require_POST
def upload_delete(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = selectors.upload_get_for_user(user=request.user, upload_id=upload_id)
    try:
        uploads.upload_delete(upload=upload)
    except Refused as refused:
        return refusals.refusal_redirect(request, refused, "jobs:uploads")
    messages.success(request, f"Upload {upload.name!r} deleted.")
    return redirect("jobs:uploads")
