"""`python -m ladder.launch.emulator_server DATA_DIR PORT`: gcp-storage-emulator with the two things tensorstore
(orbax checkpoints) needs from the Cloud Storage JSON API and the emulator leaves out (measured: without
them every conditional read and write fails with "Malformed StorageGeneration"):
- media downloads carry x-goog-generation / x-goog-metageneration headers (the object's generation);
- ifGenerationMatch / ifGenerationNotMatch preconditions on reads and writes: 412, or 304 for a read whose
  generation did not change (generation 0 = "the object must not exist").
Patched before the emulator's routes are built, so every route serves the patched handlers.
"""

from __future__ import annotations

import sys
from http import HTTPStatus

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects


def _generation(storage, bucket: str, name: str) -> str | None:
    try:
        return str(storage.get_file_obj(bucket, name)["generation"])
    except (NotFound, KeyError):
        return None


def _precondition(request, current: str | None) -> HTTPStatus | None:
    match = request.query.get("ifGenerationMatch")
    if match and (current or "0") != match[0]:
        return HTTPStatus.PRECONDITION_FAILED
    not_match = request.query.get("ifGenerationNotMatch")
    if not_match and current is not None and current == not_match[0]:
        return HTTPStatus.NOT_MODIFIED
    return None


_download, _insert = objects.download, objects.insert


def download(request, response, storage, *args, **kwargs):
    current = _generation(storage, request.params["bucket_name"], request.params["object_id"])
    failed = _precondition(request, current)
    if failed is not None and current is not None:
        response.status = failed
        return None
    if current is not None:
        response["x-goog-generation"] = current
        response["x-goog-metageneration"] = "1"
    return _download(request, response, storage, *args, **kwargs)


def insert(request, response, storage, *args, **kwargs):
    name = (request.query.get("name") or [None])[0]
    if name and request.query.get("ifGenerationMatch"):
        if _precondition(request, _generation(storage, request.params["bucket_name"], name)) is not None:
            response.status = HTTPStatus.PRECONDITION_FAILED
            return None
    return _insert(request, response, storage, *args, **kwargs)


objects.download, objects.insert = download, insert


def main(argv: list[str]) -> int:
    from gcp_storage_emulator.server import create_server  # after the patch: its routes take the new handlers

    data_dir, port = argv[0], int(argv[1])
    server = create_server("127.0.0.1", port, in_memory=False, data_dir=data_dir)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
