"""The run bundle: one self-contained folder with everything the app needs, written atomically.

The floor both sides stand on: training writes through `write`, the app reads through `read.Bundle`, and this
package imports neither. Its files are its jobs:

- `layout`: the format, its version, where each artifact lives, the checks every file passes;
- `write`: the writers (a whole run; files and evaluation sets added to a complete bundle);
- `read`: `Bundle`, one reader per artifact;
- `hub`: a bundle opened from, or published to, the Hugging Face Hub;
- `upgrade`: older formats converted;
- `__main__`: `python -m food101_core.bundle check|upgrade|publish`.
"""

from .hub import load_bundle, publish_bundle
from .layout import (
    ADD_ONNX,
    FORMAT,
    STAGES,
    TEST,
    VERSION,
    BundleError,
    check_file,
    check_set_name,
    served_model_sha,
    set_dir,
    set_split,
)
from .read import Bundle, find_newest_bundle, log_fetch
from .upgrade import upgrade_bundle
from .write import (
    Results,
    SetResults,
    add_files,
    add_set,
    encode_embedding,
    photo_files,
    put_files,
    quality_files,
    read_set_archive,
    renamed_set,
    serving_files,
    slice_files,
    standalone_set,
    swap_into_place,
    write_bundle,
    write_manifest,
)

__all__ = [
    "ADD_ONNX", "FORMAT", "STAGES", "TEST", "VERSION", "Bundle", "BundleError", "Results", "SetResults", "add_files",
    "add_set", "check_file", "check_set_name", "encode_embedding", "find_newest_bundle", "load_bundle", "log_fetch",
    "photo_files", "publish_bundle", "put_files", "quality_files", "read_set_archive", "renamed_set",
    "served_model_sha", "serving_files", "set_dir", "set_split", "slice_files", "standalone_set", "swap_into_place",
    "upgrade_bundle", "write_bundle", "write_manifest",
]  # fmt: skip
