"""Storage that keeps up: on PostgreSQL the point and rollup tables become partitioned by time.

0001 made plain tables (empty on every install: telemetry was never released unpartitioned). On
PostgreSQL this migration drops them and makes the same columns and primary keys as tables
partitioned by RANGE of their time column, each with a DEFAULT partition (so an insert never fails
for want of a partition) and a BRIN index on time. Dated partitions are made and dropped by
`telemetry.partitions` (beat: `telemetry.partitions_maintain`). On SQLite nothing changes. Django's
state is untouched: the models stay ordinary tables with a composite primary key. The series_id
indexes of 0001 are not remade: the primary key (series_id, time) serves them.
"""

import django.db.models.deletion
from django.db import migrations, models

# table: (time column, the columns after series_id and the time)
TABLES = {
    "telemetry_point": ("timestamp", '"value" double precision NOT NULL'),
    "telemetry_minuterollup": ("bucket", '"count" integer NOT NULL CHECK ("count" >= 0), "sum" double precision NOT NULL, '
                                         '"min" double precision NOT NULL, "max" double precision NOT NULL'),
    "telemetry_hourrollup": ("bucket", '"count" integer NOT NULL CHECK ("count" >= 0), "sum" double precision NOT NULL, '
                                       '"min" double precision NOT NULL, "max" double precision NOT NULL'),
}
# 0001's names of the series_id indexes, remade when going back.
SERIES_INDEXES = {
    "telemetry_point": "telemetry_point_series_id_b280068c",
    "telemetry_minuterollup": "telemetry_minuterollup_series_id_cfa665fe",
    "telemetry_hourrollup": "telemetry_hourrollup_series_id_5361f080",
}


def _columns(table):
    time, rest = TABLES[table]
    return f'"series_id" bigint NOT NULL, "{time}" timestamp with time zone NOT NULL, {rest}'


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, (time, _) in TABLES.items():
        schema_editor.execute(f'DROP TABLE "{table}"')
        schema_editor.execute(f'CREATE TABLE "{table}" ({_columns(table)}, PRIMARY KEY ("series_id", "{time}")) '
                              f'PARTITION BY RANGE ("{time}")')
        schema_editor.execute(f'CREATE TABLE "{table}_default" PARTITION OF "{table}" DEFAULT')
        schema_editor.execute(f'CREATE INDEX "{table}_{time}_brin" ON "{table}" USING brin ("{time}")')


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, (time, _) in TABLES.items():
        schema_editor.execute(f'DROP TABLE "{table}" CASCADE')  # with its partitions
        schema_editor.execute(f'CREATE TABLE "{table}" ({_columns(table)}, PRIMARY KEY ("series_id", "{time}"))')
        schema_editor.execute(f'CREATE INDEX "{SERIES_INDEXES[table]}" ON "{table}" ("series_id")')


class Migration(migrations.Migration):

    dependencies = [
        ('telemetry', '0002_ingest_imports'),
    ]

    operations = [
        migrations.RunPython(partition, unpartition, elidable=False),
        migrations.CreateModel(
            name='RollupPending',
            fields=[
                ('pk', models.CompositePrimaryKey('series_id', 'bucket', blank=True, editable=False, primary_key=True, serialize=False)),
                ('bucket', models.DateTimeField(help_text="The minute's start (UTC).")),
                ('series', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='telemetry.metric')),
            ],
            options={
                'ordering': ['series_id', 'bucket'],
            },
        ),
    ]
