"""First-run setup: an `admin` superuser with a generated password (printed once), demo data."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin user on the very first run (printing its password once) and load demo data."

    def handle(self, *args, **options):
        User = get_user_model()
        if not User.objects.exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@localhost", password)
            bar = "=" * 64
            self.stdout.write(
                self.style.SUCCESS(
                    f"\n{bar}\n  First run: created the superuser\n"
                    f"    username: admin\n    password: {password}\n"
                    f"  It is shown only this once. Log in at http://127.0.0.1:8000/login/\n{bar}\n"
                )
            )
        for loader in self.demo_loaders():
            loader(stdout=self.stdout)

    def demo_loaders(self):
        """Each app that ships demo data offers `demo.load(stdout=...)`; it must be idempotent."""
        import importlib

        loaders = []
        for app in ("datasets", "training", "pipelines", "monitoring"):
            try:
                module = importlib.import_module(f"{app}.demo")
            except ModuleNotFoundError:
                continue
            loaders.append(module.load)
        return loaders
