"""Two processes building the same unbuilt dataset at once (two rungs started together on one machine):
both succeed and read the same bytes; one builds, the other waits and uses its result."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Each child opens the builder, says it is ready, waits for the other, then builds. Gathering the documents
# is made to take a second, so without a lock both children are inside the build together.
CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from ladder.data import tfds_builder as tb

    files, root, me, other = sys.argv[1:5]
    gather = tb.LadderFiles._documents
    def slow_documents(self):
        print("GATHERING-DOCUMENTS", file=sys.stderr, flush=True)
        time.sleep(1.0)
        yield from gather(self)
    tb.LadderFiles._documents = slow_documents
    builder = tb.files_builder(files, Path(root), name="shared")
    Path(me).touch()
    deadline = time.time() + 120
    while not Path(other).exists():
        assert time.time() < deadline, "the other process never got ready"
        time.sleep(0.01)
    builder = tb.prepared(builder)
    train = tb.read_split(builder, "train")
    print(json.dumps({"sha": builder.info.metadata["content_sha256"], "counts": builder.info.metadata["counts"],
                      "train": sorted(train[i]["id"].decode() for i in range(len(train)))}))
""")


@pytest.mark.timeout(300)
def test_two_processes_building_one_dataset_both_get_it(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    for i in range(40):
        (files / f"doc{i}.txt").write_text(f"document {i}: " + "words " * (i + 1))
    root = tmp_path / "tfds"
    env = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS="cpu")
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(files), str(root), str(ready[i]), str(ready[1 - i])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-3000:]
            outs.append((json.loads(out.strip().splitlines()[-1]), err))
    finally:
        for p in procs:
            p.kill()
    (a, err_a), (b, err_b) = outs
    assert a == b and a["counts"]["train"]["documents"] == len(a["train"]) > 0
    assert err_a.count("GATHERING-DOCUMENTS") + err_b.count("GATHERING-DOCUMENTS") == 1  # the waiter did not gather again
    built = root / "ladder_files" / "shared"
    assert [p.name for p in built.iterdir()] == ["1.0.0"]  # no leftover incomplete directory
