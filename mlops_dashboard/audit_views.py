"""The audit log's pages: a project's (its maintainers and staff), everything (staff), and their CSV.

Filters (user, action, from/to) come from the query string, so a filtered view is a link to share,
and its CSV export (`?format=csv`, or `audit.csv`) holds exactly the rows shown, streamed.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django import forms
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .audit import audit_csv_lines, audit_entries
from .models import Project

PAGE_SIZE = 50


class AuditFilterForm(forms.Form):
    user = forms.CharField(max_length=150, required=False, label="User")
    action = forms.CharField(max_length=40, required=False, label="Action")
    # A date alone: from its start, or (for `to`) through its end.
    since = forms.CharField(required=False, label="From", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.CharField(required=False, label="To", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def _moment(self, name: str, *, end: bool):
        text = self.cleaned_data.get(name, "").strip()
        if not text:
            return None
        field = forms.DateTimeField()
        try:
            moment = field.clean(text)
        except forms.ValidationError:
            raise forms.ValidationError("A date (2026-12-05) or a date and time (2026-12-05T14:30).") from None
        if end and len(text) == 10:  # a date: through its end
            moment = timezone.make_aware(datetime.combine(timezone.localtime(moment).date() + timedelta(days=1), time()))
        return moment

    def clean_since(self):
        return self._moment("since", end=False)

    def clean_until(self):
        return self._moment("until", end=True)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise forms.ValidationError("“From” must be before “To”.")
        return data


def _audit_page(request, *, project: Project | None, template_context: dict, csv_name: str, csv: bool = False):
    form = AuditFilterForm(request.GET or None)
    if request.GET and not form.is_valid():
        return render(request, "projects/audit.html", {**template_context, "form": form, "page": None,
                                                       "project": project}, status=400)
    filters = form.cleaned_data if request.GET else {}
    entries = audit_entries(user=request.user, project=project, username=filters.get("user") or None,
                            action=filters.get("action") or None, since=filters.get("since"),
                            until=filters.get("until"))
    if not project and request.GET.get("project"):
        scope = request.GET["project"]
        entries = entries.filter(project__isnull=True) if scope == "none" else entries.filter(project__slug=scope)
    if csv or request.GET.get("format") == "csv":
        response = StreamingHttpResponse(audit_csv_lines(entries), content_type="text/csv; charset=utf-8")
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="{csv_name}-{stamp}.csv"'
        return response
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("format", None)
    known = audit_entries(user=request.user, project=project).order_by()
    return render(request, "projects/audit.html", {
        **template_context, "form": form, "page": page, "project": project, "query": query.urlencode(),
        "actions": sorted(set(known.values_list("action", flat=True).distinct()[:200])),
    })


@never_cache
@require_GET
def project_audit(request, slug: str, csv: bool = False):
    """A project's audit log: its maintainers and staff (other members 403, outsiders 404)."""
    project = get_object_or_404(Project, slug=slug)
    try:
        return _audit_page(request, project=project, csv=csv, csv_name=f"audit-{project.slug}",
                           template_context={"nav": "audit"})
    except PermissionDenied as denied:
        return render(request, "projects/audit.html", {"nav": "audit", "project": project, "denied": str(denied)},
                      status=403)


@never_cache
@require_GET
def audit_all(request, csv: bool = False):
    """Every project's audit log and the system-wide entries (logins, tokens, projects): staff only."""
    if not request.user.is_staff:
        return render(request, "projects/audit.html", {
            "nav": "audit", "denied": "The whole audit log needs an admin (staff) account; maintainers read "
                                      "their project's on its Audit page."}, status=403)
    return _audit_page(request, project=None, csv=csv, csv_name="audit", template_context={
        "nav": "audit", "projects": Project.objects.order_by("name"), "scope": request.GET.get("project", ""),
    })
