"""What the current user may do, for pages: `{% load roles %}`.

    {% denied user "deploy" version as why %}
    {% if not why %}<button ...>Deploy</button>{% else %}{% include "includes/locked.html" %}{% endif %}

`why` is "" when allowed, else the sentence naming the role needed (mlops_dashboard.permissions).
A page never shows a button its user may not press; the locked hint in its place says why.
"""

from django import template

from mlops_dashboard import permissions

register = template.Library()


@register.simple_tag
def denied(user, action: str, obj) -> str:
    return permissions.tooltip(user, action, obj)


@register.simple_tag
def role_of(user, project) -> str:
    """The user's role in the project ("admin" for staff), or ""."""
    return (permissions.role_in(user, project) or "") if project is not None else ""
