"""Helpers shared by the apps' admin modules."""

import json

from django.contrib import admin
from django.utils.html import format_html


def pretty_json(value) -> str:
    """A JSON field as readable, escaped pre-formatted text in a read-only admin field."""
    if value in (None, "", [], {}):
        return "—"
    return format_html("<pre style='margin:0;white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services: the admin shows them and runs actions, never edits them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
