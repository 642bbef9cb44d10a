"""`python -m ladder.launch.fetch SRC DST`: copy one file from gs:// (or any etils.epath path) to a local path.

Containers run by xpk have ladder installed but not necessarily gcloud; this is how they get the plan.
"""

import sys

from etils import epath

from ladder import storage

if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    storage.write_bytes(dst, epath.Path(src).read_bytes())  # a killed copy never leaves half a plan
