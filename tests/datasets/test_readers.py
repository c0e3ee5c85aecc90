"""Arrow's streaming reader behind the throttle: closed part-read, it leaves nothing running that could
abort the process at exit; failing to open, it does not wait for ever on the throttle."""

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


# A first row longer than a block: Arrow's open fails, but first waits for its reading thread, which
# the throttle held back (nothing consumed yet) for ever. Once it has failed, the program waits for
# Arrow to let go of the file (a few milliseconds), as a process that goes on does: exiting at once
# meets Arrow still holding it, and aborts as above.
FAILED_OPEN = """
import gc, sys, time
sys.path.insert(0, sys.argv[2])
import pyarrow as pa, pyarrow.csv as pacsv
from datasets.profiling.reader import ThrottledFile
stream = ThrottledFile(sys.argv[1], 65536, ahead=2)
try:
    pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=65536),
                   parse_options=pacsv.ParseOptions(newlines_in_values=True))
except pa.ArrowInvalid as exc:
    print("straddling" in str(exc))
finally:
    stream.close()
deadline = time.monotonic() + 60
while sys.getrefcount(stream) > 2 and time.monotonic() < deadline:
    gc.collect()
    time.sleep(0.05)
"""


def test_an_open_that_fails_does_not_wait_for_ever_on_the_throttle(tmp_path):
    path = tmp_path / "long-first-row.csv"
    with open(path, "w") as f:  # a first row of 400 KB (six blocks), quoted, with newlines
        f.write('a,b\n1,"' + "x\n" * 200_000 + '"\n')
        f.writelines(f"{i},y\n" for i in range(20_000))
    run = subprocess.run([sys.executable, "-c", FAILED_OPEN, str(path), str(ROOT)], capture_output=True, text=True,
                         timeout=120)
    assert (run.returncode, run.stdout.strip()) == (0, "True"), run.stderr[-2000:]
