"""The audit log's pages, included at the site's root (projects/<slug>/audit/ sits beside the other
project pages)."""

from django.urls import path

from . import audit_views

urlpatterns = [
    path("projects/<slug:slug>/audit/", audit_views.project_audit, name="project-audit"),
    path("projects/<slug:slug>/audit.csv", audit_views.project_audit, {"csv": True}, name="project-audit-csv"),
    path("audit/", audit_views.audit_all, name="audit"),
    path("audit.csv", audit_views.audit_all, {"csv": True}, name="audit-csv"),
]
