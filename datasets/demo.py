"""Demo datasets for a first run: real data sets that ship inside scikit-learn (no download),
written as CSV and loaded through the same path as an upload (validated and profiled by a worker)."""

import os
import tempfile

DEMOS = [
    ("Breast cancer (demo)", "load_breast_cancer", "target", "Diagnostic features of breast masses; target 1 = benign."),
    ("Wine (demo)", "load_wine", "target", "Chemical analysis of wines from three cultivars."),
    ("Diabetes (demo)", "load_diabetes", "target", "Ten baseline variables and disease progression one year later."),
    ("Iris (demo)", "load_iris", "species", "Measurements of three iris species."),
]


def load(stdout=None) -> list:
    from sklearn import datasets as sk

    from . import services
    from .models import Dataset

    created = []
    for name, loader, target, description in DEMOS:
        if Dataset.objects.filter(name=name).exists():
            continue
        frame = getattr(sk, loader)(as_frame=True).frame
        if loader == "load_iris":
            names = getattr(sk, loader)().target_names
            frame = frame.rename(columns={"target": "species"})
            frame["species"] = frame["species"].map(dict(enumerate(names)))
        frame.columns = [c.replace(" ", "_").replace("(", "").replace(")", "") for c in frame.columns]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{loader.removeprefix('load_')}.csv")
            frame.to_csv(path, index=False)
            created.append(services.dataset_create_from_file(path=path, name=name, target_column=target,
                                                             description=description))
    if created and stdout is not None:
        stdout.write(f"Loaded {len(created)} demo datasets (a worker validates and profiles them).\n")
    return created
