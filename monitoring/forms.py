"""The Monitoring page's alert rule form (create and edit); the services do the writing."""

from django import forms

from .models import AlertRule

MAX_SUGGESTED_ACTIONS = 10
MAX_SUGGESTED_ACTION_LENGTH = 500


def default_repeat_interval() -> int:
    return AlertRule._meta.get_field("repeat_interval_minutes").default


class AdminAlertRuleForm(forms.ModelForm):
    """The admin's rule form: a blank repeat interval is the default."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "repeat_interval_minutes" in self.fields:
            self.fields["repeat_interval_minutes"].required = False

    def clean_repeat_interval_minutes(self):
        value = self.cleaned_data.get("repeat_interval_minutes")
        return default_repeat_interval() if value is None else value

    def clean(self):
        # The channels' scope, as the service checks it: a form error rather than a failed save.
        from django.core.exceptions import ValidationError

        from .services.alerts import _rule_channels

        data = super().clean()
        project = data.get("project") if "project" in self.fields else self.instance.project
        try:
            _rule_channels(getattr(project, "pk", None), list(data.get("channels") or []))
        except ValidationError as exc:
            self.add_error("channels", exc.message_dict.get("channels", exc.messages))
        return data


class AlertRuleForm(forms.ModelForm):
    suggested_actions_text = forms.CharField(
        label="Suggested actions", required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line; shown with each alert the rule opens.",
    )

    class Meta:
        model = AlertRule
        fields = ["name", "kind", "metric", "comparison", "threshold", "duration_seconds", "priority", "enabled",
                  "description", "channels", "repeat_interval_minutes"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2}), "channels": forms.CheckboxSelectMultiple}

    scope = forms.ChoiceField(
        label="For", required=False, choices=[("project", "This project"), ("global", "Every project (global)")],
        help_text="A project's rules watch its jobs, serving model and telemetry; global rules (staff) also hosts and workers.")

    def __init__(self, *args, user=None, project=None, **kwargs):
        self.user, self.project = user, project
        super().__init__(*args, **kwargs)
        if self.instance and self.instance.pk or not (user is not None and user.is_staff and project is not None):
            # Fixed once made; a maintainer makes its project's rules only, staff in no project global ones.
            del self.fields["scope"]
        if self.instance and self.instance.pk:
            self.fields["suggested_actions_text"].initial = "\n".join(self.instance.suggested_actions or [])
        self._limit_channels()
        self.fields["threshold"].widget.attrs.update({"step": "any"})
        self.fields["duration_seconds"].label = "Hold for (s)"

    def _limit_channels(self):
        """The channels this rule may name: the global ones, and its project's (the service checks again)."""
        from django.db.models import Q

        from .models import NotificationChannel

        project_id = self.instance.project_id if self.instance and self.instance.pk else getattr(self.project, "pk", None)
        scope = Q(project__isnull=True) | (Q(project_id=project_id) if project_id else Q(pk__in=[]))
        field = self.fields["channels"]
        field.queryset = NotificationChannel.objects.filter(scope).order_by("project_id", "name")
        field.label_from_instance = lambda c: f"{c.name} ({c.service or 'channel'}{', global' if c.project_id is None else ''}" \
                                              f"{'' if c.enabled else ', disabled'})"
        field.help_text = "None checked: every enabled channel marked “default route”."
        self.fields["repeat_interval_minutes"].label = "Repeat every (min)"
        self.fields["repeat_interval_minutes"].required = False  # blank: the default

    def clean_repeat_interval_minutes(self):
        value = self.cleaned_data.get("repeat_interval_minutes")
        return default_repeat_interval() if value is None else value

    def clean_suggested_actions_text(self):
        # The API's limits (at most 10 actions of 500 characters), refused rather than cut silently.
        lines = [line.strip() for line in self.cleaned_data.get("suggested_actions_text", "").splitlines()]
        lines = [line for line in lines if line]
        if len(lines) > MAX_SUGGESTED_ACTIONS:
            raise forms.ValidationError(f"At most {MAX_SUGGESTED_ACTIONS} suggested actions (one per line); "
                                        f"this has {len(lines)}.")
        long = [i + 1 for i, line in enumerate(lines) if len(line) > MAX_SUGGESTED_ACTION_LENGTH]
        if long:
            raise forms.ValidationError(f"Action {long[0]} is {len(lines[long[0] - 1]):,} characters long; "
                                        f"at most {MAX_SUGGESTED_ACTION_LENGTH}.")
        return lines

    def project_for_create(self):
        """The project of a new rule: the page's current one, unless staff chose global."""
        if "scope" in self.fields and self.cleaned_data.get("scope") == "global":
            return None
        if self.project is None:
            return None
        return self.project

    def service_fields(self) -> dict:
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["suggested_actions"] = self.cleaned_data["suggested_actions_text"]
        data["channels"] = list(data.get("channels") or [])
        return data
