from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from jobs.api import metrics
from jobs.api.docs import ApiDocs

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", ApiDocs.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("jobs.api.urls")),
    path("tokens/", include("tokens.urls")),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", include("jobs.urls")),
]

handler400 = "jobs.views.errors.bad_request"
handler403 = "jobs.views.errors.permission_denied"
handler404 = "jobs.views.errors.page_not_found"
handler500 = "jobs.views.errors.server_error"
