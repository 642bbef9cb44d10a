"""`python -m ladder.launch.fetch SRC DST`: copy one file from gs:// (or any etils.epath path) to a local path.

Containers run by xpk have ladder installed but not necessarily gcloud; this is how they get the plan.
"""

import sys

from etils import epath

if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    epath.Path(dst).write_bytes(epath.Path(src).read_bytes())
