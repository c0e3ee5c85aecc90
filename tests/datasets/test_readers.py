"""A streaming reader closed part-read leaves nothing running that could abort the process at exit."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Reads one batch of the file, closes the stream and keeps it alive until the interpreter exits (as
# a traceback that holds it would): Arrow's I/O thread, still reading ahead through Python, used to
# abort the process as it finalized ("Fatal Python error: PyGILState_Release", 15 runs in 20).
PROGRAM = """
import sys
sys.path.insert(0, sys.argv[2])
from datasets.profiling.reader import CsvStream
kept = []
for _ in range(3):
    stream = CsvStream(sys.argv[1], encoding="utf8", delimiter=",", block_size=1 << 20, column_types={})
    next(iter(stream))
    stream.close()
    kept.append(stream)
print("read")
"""


def test_a_process_that_closed_a_part_read_stream_exits_cleanly(tmp_path):
    path = tmp_path / "data.csv"
    with open(path, "w") as f:  # 16 MB: many blocks beyond the first and those read ahead
        f.write("id,name,score,flag\n")
        f.writelines(f"{i},name_{i % 977},{i * 0.37:.3f},{i % 2 == 0}\n" for i in range(500_000))
    for _ in range(10):
        run = subprocess.run([sys.executable, "-c", PROGRAM, str(path), str(ROOT)], capture_output=True, text=True,
                             timeout=120)
        assert (run.returncode, run.stdout.strip()) == (0, "read"), run.stderr[-2000:]
