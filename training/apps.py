from django.apps import AppConfig


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"
    verbose_name = "Training and models"

    def ready(self):
        # Registers the reaper of stale training jobs (@reaper), wherever beat's task runs.
        from . import services  # noqa: F401
