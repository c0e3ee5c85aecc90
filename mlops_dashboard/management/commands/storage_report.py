import json

from django.core.management.base import BaseCommand
from django.template.defaultfilters import filesizeformat

from mlops_dashboard.storage import storage_report


def _size(value) -> str:
    return "-" if value is None else str(filesizeformat(value)).replace("\xa0", " ")


def _rows(kind: dict) -> str:
    if kind["rows"] is None:
        return "-"
    return ("~" if kind["estimated"] else "") + f"{kind['rows']:,}"


class Command(BaseCommand):
    help = ("Rows, table bytes and files per kind of stored thing, with their retention, and the Redis "
            "event log. Rows marked ~ are PostgreSQL's estimate (large tables are not counted).")

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument("--cached", action="store_true",
                            help="Reuse the report the System page cached (STORAGE_REPORT_CACHE_SECONDS).")

    def handle(self, *args, **options):
        report = storage_report(fresh=not options["cached"])
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        lines = [("Kind", "Retention", "Rows", "Table size", "Files", "File size")]
        for kind in report["kinds"]:
            files = kind["files"]
            lines.append((kind["label"], kind["retention"], _rows(kind), _size(kind["bytes"]),
                          f"{files['count']:,}" if files else "-", _size(files["bytes"]) if files else "-"))
        other = report["other_files"]
        lines.append(("Other files under MEDIA_ROOT", "-", "-", "-", f"{other['count']:,}", _size(other["bytes"])))
        log = report["event_log"]
        entries = "-" if log["entries"] is None else f"{log['entries']:,}"
        lines.append(("Event log (Redis)", f"{log['limit']:,} events", entries, _size(log["bytes"]), "-", "-"))
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(lines[0]))]
        for line in lines:
            cells = [str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
            self.stdout.write("  ".join(cells).rstrip())
        estimated = any(kind["estimated"] for kind in report["kinds"])
        self.stdout.write(f"\nDatabase: {report['database']}; measured {report['generated_at']}."
                          + (" ~: PostgreSQL's estimate for a large table." if estimated else ""))
