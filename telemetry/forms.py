"""The registry forms of the source page: a source's and each of its metrics' description; the
services (`source_update`, `metric_update`) do the writing."""

from __future__ import annotations

import json

from django import forms

from .models import Metric, Source

LABELS_HELP = 'A JSON object of short labels, e.g. {"line": "A", "site": "Lyon"}.'


class LabelsField(forms.JSONField):
    """A JSON object of string keys (the registry's free labels)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", LABELS_HELP)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}))
        super().__init__(**kwargs)

    def clean(self, value):
        data = super().clean(value)
        if data in (None, ""):
            return {}
        if not isinstance(data, dict):
            raise forms.ValidationError("Labels are a JSON object: {\"key\": \"value\", ...}.")
        if len(json.dumps(data)) > 2000:
            raise forms.ValidationError("Labels take at most 2,000 characters of JSON.")
        return data


class SourceForm(forms.ModelForm):
    labels = LabelsField()

    class Meta:
        model = Source
        fields = ["description", "labels", "expected_interval_seconds"]
        labels = {"expected_interval_seconds": "Expected interval (seconds)"}
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def service_fields(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.Meta.fields}


class MetricForm(forms.ModelForm):
    labels = LabelsField()

    class Meta:
        model = Metric
        fields = ["unit", "description", "labels", "expected_interval_seconds"]
        labels = {"expected_interval_seconds": "Expected interval (seconds)"}
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", f"metric-{kwargs['instance'].pk}" if kwargs.get("instance") else "metric")
        super().__init__(*args, **kwargs)
        self.fields["expected_interval_seconds"].help_text = "Empty: the source's."

    def service_fields(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.Meta.fields}
