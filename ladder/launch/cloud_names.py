"""The names a cloud launch passes to gcloud and xpk, checked before anything runs.

A launch ships the plan, then creates resources one by one; a project id, zone or bucket that Google's
side refuses used to surface only there, as gcloud's own error in the middle of a launch (after the plan was
copied), or, for a zone, as "not found" once per rung. The values were always shell-quoted, so nothing was
injected; they were just not checked. Each rule below is the provider's documented one; the project rule is
gcloud's own (googlecloudsdk/core/properties.py `_VALID_PROJECT_REGEX`, Cloud SDK 528; the tests compare the
two on the installed gcloud). Resource names are not checked here: `jobs.resource_name` makes any prefix one.
"""

from __future__ import annotations

import os
import re

from ladder.errors import LadderError

# gcloud's rule: an optional domain ("example.com:") and an id of lowercase letters, digits and dashes that
# starts and ends with a letter or digit (a leading digit is allowed: some legacy ids have one).
PROJECT = re.compile(r"^(?:(?:[-a-z0-9]{1,63}\.)*(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?):)?"
                     r"(?:[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)$")
# a Compute Engine zone: REGION-LETTER, the region being words and a number (us-central2-b,
# northamerica-northeast1-a, europe-west4-a)
ZONE = re.compile(r"^[a-z]+(?:-[a-z]+)+[0-9]+-[a-z]$")
REGION = re.compile(r"^[a-z]+(?:-[a-z]+)+[0-9]+$")
# a Cloud Storage bucket: 3-63 characters of lowercase letters, digits, - _ and ., starting and ending with
# a letter or digit (dotted names: each part at most 63, 222 in all)
BUCKET_PART = re.compile(r"^[a-z0-9](?:[-a-z0-9_]{0,61}[a-z0-9])?$")
# a GKE cluster: lowercase letters, digits and dashes, starting with a letter, at most 40 characters
CLUSTER = re.compile(r"^[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_project(project: str | None) -> None:
    if project is not None and not PROJECT.match(project):
        raise LadderError(f"--project: {project!r} is not a project ID (lowercase letters, digits and dashes, "
                          "starting and ending with a letter or digit; the ID, not the display name); see "
                          "`gcloud projects list`")


def check_zone(zone: str | None) -> None:
    if zone is None or ZONE.match(zone):
        return
    if REGION.match(zone):
        raise LadderError(f"--zone: {zone!r} is a region, not a zone; add the zone's letter, e.g. {zone}-b "
                          "(`gcloud compute tpus locations list`)")
    raise LadderError(f"--zone: {zone!r} is not a zone name such as us-central2-b (lowercase, no spaces); "
                      "see `gcloud compute tpus locations list`")


def check_gs_root(root: str) -> None:
    """gs://BUCKET[/PATH]: a bucket name Cloud Storage accepts and a path without control characters or
    empty parts (`gs://b//x`, a doubled slash, names an object under an empty folder name)."""
    bucket, _, rest = root[len("gs://"):].partition("/")
    parts = bucket.split(".")
    ok = (3 <= len(bucket) <= (222 if len(parts) > 1 else 63) and all(BUCKET_PART.match(p) for p in parts))
    if not ok:
        raise LadderError(f"--run-root: {bucket!r} in {root!r} is not a Cloud Storage bucket name (3-63 "
                          "lowercase letters, digits, - _ and ., starting and ending with a letter or digit); "
                          "write gs://BUCKET/PATH")
    if CONTROL.search(rest) or (rest.rstrip("/") and "" in rest.rstrip("/").split("/")):
        raise LadderError(f"--run-root: {root!r} has a control character or an empty part (//) in its path; "
                          "write gs://BUCKET/PATH with one slash between parts")


def check_text(value: str | None, flag: str, *, spaces: bool) -> None:
    """A value written into a worker script or a command: no newline or other control character (a newline in
    --package split the script's lines), and no spaces where the tool takes one word."""
    if value is None:
        return
    if CONTROL.search(value) or (not spaces and re.search(r"\s", value)):
        what = "a control character (newline, tab)" if CONTROL.search(value) else "a space"
        raise LadderError(f"{flag}: {value!r} has {what}; give it on one line" + ("" if spaces else ", as one word"))


def check_image(image: str | None) -> None:
    """A container image reference, [HOST[:PORT]/]PATH[:TAG|@DIGEST]: one word, and a PATH in lowercase (Docker's
    reference grammar; `us-docker.pkg.dev/MY_PROJECT/...` was accepted here and refused by GKE at pull time)."""
    check_text(image, "--image", spaces=False)
    if image is None:
        return
    host, _, rest = image.split("@", 1)[0].partition("/")
    path = rest if rest and ("." in host or ":" in host or host == "localhost") else image.split("@", 1)[0]
    path = path.rsplit(":", 1)[0] if ":" in path.rsplit("/", 1)[-1] else path  # the tag may hold capitals
    if path != path.lower():
        raise LadderError(f"--image: {image!r} has capitals in its repository path {path!r}; image repositories "
                          "are lowercase, e.g. us-docker.pkg.dev/my-project/ladder/ladder:v0.1.0")


def check_cloud_options(opts) -> None:
    """Every name a cloud launch hands to gcloud or xpk (LaunchOptions), before the plan is shipped."""
    check_project(opts.project)
    check_zone(opts.zone)
    if opts.run_root.startswith("gs://"):
        check_gs_root(opts.run_root)
    if opts.backend in ("tpu-vm", "queued-resources") and os.path.exists(opts.work_dir) \
            and not os.path.isdir(opts.work_dir):  # before: found only when the first script was written
        raise LadderError(f"--work-dir: {opts.work_dir} is a file; the startup scripts go in a directory: move "
                          "the file or pass another --work-dir")
    check_text(opts.package, "--package", spaces=True)
    check_text(opts.runtime_version, "--runtime-version", spaces=False)
    check_image(opts.image)
    if opts.cluster is not None and not CLUSTER.match(opts.cluster):
        raise LadderError(f"--cluster: {opts.cluster!r} is not a GKE cluster name (lowercase letters, digits and "
                          "dashes, starting with a letter, at most 40); see `gcloud container clusters list`")
