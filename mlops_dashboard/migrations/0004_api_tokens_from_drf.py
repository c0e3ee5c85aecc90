"""DRF's plaintext tokens (`authtoken_token`, from before knox) become hashed ApiTokens, and their table
goes: a program holding an old key keeps working with it (it expires API_TOKEN_TTL_DAYS from now)."""

from datetime import UTC, timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from knox.crypto import hash_token
from knox.settings import CONSTANTS

OLD_TABLE = "authtoken_token"


def _aware(value):
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is None:
        return timezone.now()
    return timezone.make_aware(value, UTC) if timezone.is_naive(value) else value


def convert(apps, schema_editor):
    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return  # a database made after knox came in
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {q('key')}, {q('user_id')}, {q('created')} FROM {q(OLD_TABLE)}")
        rows = cursor.fetchall()
    ApiToken = apps.get_model("mlops_dashboard", "ApiToken")
    expiry = timezone.now() + timedelta(days=settings.API_TOKEN_TTL_DAYS)
    for key, user_id, created in rows:
        # Knox's scheme: the key's first characters find the row, a SHA-512 digest of the whole key checks it.
        token = ApiToken.objects.create(token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], digest=hash_token(key),
                                        user_id=user_id, expiry=expiry, name="Token from before hashing")
        ApiToken.objects.filter(pk=token.pk).update(created=_aware(created))  # auto_now_add set it to now
    schema_editor.execute(f"DROP TABLE {q(OLD_TABLE)}")


class Migration(migrations.Migration):
    dependencies = [("mlops_dashboard", "0003_api_tokens")]

    operations = [migrations.RunPython(convert, migrations.RunPython.noop)]
