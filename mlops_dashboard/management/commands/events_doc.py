from django.core.management.base import BaseCommand

from mlops_dashboard.events.docs import render


class Command(BaseCommand):
    help = "Print docs/events.md, generated from the event catalog."

    def handle(self, *args, **options):
        self.stdout.write(render(), ending="")
