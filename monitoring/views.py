from django.shortcuts import render

from mlops_dashboard.health import run_checks


def index(request):
    return render(request, "monitoring/index.html", {"nav": "monitoring"})


def system(request):
    return render(request, "monitoring/system.html", {"nav": "system", "checks": run_checks()})
