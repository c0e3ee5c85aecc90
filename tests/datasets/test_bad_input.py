"""Two hundred malformed files through the API and a real worker: each one answers 4xx or ends
`invalid` with a clear message; no 5xx, no dataset left validating, no stray file."""

import random

from datasets.models import Dataset
from tests import procs


def malformed_files() -> list[tuple[str, bytes]]:
    rng = random.Random(20261121)
    files: list[tuple[str, bytes]] = [
        ("empty.csv", b""),
        ("blank-lines.csv", b"\n\n\n"),
        ("header-only.csv", b"a,b,c\n"),
        ("header-only-crlf.csv", b"a;b;c\r\n"),
        ("ten-thousand-columns.csv", (",".join(f"c{i}" for i in range(10_000)) + "\n" + ",".join("1" * 10_000) + "\n").encode()),
        ("huge-line.csv", b"a,b\n1," + b"x" * (12 * 1024 * 1024) + b"\n"),
        ("utf16.csv", "a,b\n1,2\n3,4\n".encode("utf-16")),
        ("nul-bytes.csv", b"a,b\n1,\x00\x00\x002\n"),
        ("duplicate-columns.csv", b"a,b,a\n1,2,3\n"),
        ("empty-column-name.csv", b"a,,c\n1,2,3\n"),
        ("png.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
        ("zip.csv", b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(2000))),
        ("unbalanced-quote.csv", b'a,b\n1,"two\n3,4\n5,6\n'),
        ("only-quotes.csv", b'"""""""\n'),
        ("bad-target.csv", b"a,b\n1,2\n"),
    ]
    for i in range(60):  # random bytes of many sizes
        files.append((f"random-{i}.csv", bytes(rng.randrange(256) for _ in range(rng.choice([1, 10, 100, 5000])))))
    for i in range(40):  # rows with the wrong number of fields
        columns = rng.randint(2, 8)
        rows = [",".join(f"v{j}" for j in range(columns)) for _ in range(rng.randint(1, 30))]
        bad = rng.randrange(len(rows))
        rows[bad] = ",".join(f"v{j}" for j in range(columns + rng.choice([-1, 1, 3])))
        files.append((f"ragged-{i}.csv", (",".join(f"h{j}" for j in range(columns)) + "\n" + "\n".join(rows) + "\n").encode()))
    for i in range(30):  # truncated in the middle of a quoted field
        files.append((f"truncated-{i}.csv", b'id,text\n' + b"".join(b'%d,"line %d"\n' % (k, k) for k in range(i + 1)) + b'%d,"cut off' % (i + 1)))
    for i in range(25):  # duplicate or blank header names in various places
        names = [f"c{j}" for j in range(rng.randint(2, 6))]
        names[rng.randrange(1, len(names))] = rng.choice(["", names[0], " "])
        files.append((f"header-{i}.csv", (",".join(names) + "\n" + ",".join("1" * len(names)) + "\n").encode()))
    for i in range(30):  # control characters and mixed binary in text
        body = b"a,b\n" + b"".join(bytes([rng.randrange(1, 32)]) * rng.randint(50, 200) + b",1\n" for _ in range(5))
        files.append((f"control-{i}.csv", body))
    return files


def test_two_hundred_malformed_files_fail_clearly_and_leave_nothing_behind(worker, client, user, stray_files):
    client.force_login(user)
    files = malformed_files()
    assert len(files) >= 200
    from django.core.files.uploadedfile import SimpleUploadedFile

    created = {}
    for filename, content in files:
        fields = {"target_column": "zzz"} if filename == "bad-target.csv" else {}
        response = client.post("/api/datasets/", {"file": SimpleUploadedFile(filename, content), **fields})
        assert response.status_code < 500, (filename, response.status_code)
        if response.status_code == 201:
            created[response.json()["id"]] = filename
        else:
            assert 400 <= response.status_code < 500 and response.json()["detail"], filename

    def settled():
        return not Dataset.objects.filter(pk__in=created, status__in=["validating", "profiling"]).exists()

    procs.wait_for(settled, timeout=240, interval=0.5, message="every upload to be validated")
    for dataset in Dataset.objects.filter(pk__in=created):
        assert dataset.status == "invalid", (created[dataset.pk], dataset.status)
        assert dataset.errors and all(len(e) > 15 for e in dataset.errors), (created[dataset.pk], dataset.errors)
        assert "Traceback" not in " ".join(dataset.errors)
    assert stray_files() == []
    response = client.get(f"/api/datasets/{next(iter(created))}/")
    assert response.status_code == 200 and response.json()["errors"]
