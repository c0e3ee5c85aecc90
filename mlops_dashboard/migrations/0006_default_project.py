"""Every existing row lands in one project, "Default"; every existing non-staff user becomes its editor."""

from django.db import migrations


def forwards(apps, schema_editor):
    Project = apps.get_model("mlops_dashboard", "Project")
    Membership = apps.get_model("mlops_dashboard", "Membership")
    User = apps.get_model("auth", "User")
    Activity = apps.get_model("mlops_dashboard", "Activity")
    project, _ = Project.objects.get_or_create(
        slug="default", defaults={"name": "Default", "description": "Everything made before projects existed."})
    Membership.objects.bulk_create(
        [Membership(project=project, user_id=pk, role="editor")
         for pk in User.objects.filter(is_staff=False).values_list("pk", flat=True)],
        ignore_conflicts=True, batch_size=1000,
    )
    Activity.objects.filter(project__isnull=True).exclude(action_type="login").update(project=project)


class Migration(migrations.Migration):
    dependencies = [("mlops_dashboard", "0005_projects"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
