"""A bundle on the Hugging Face Hub: downloaded file by file when first used, and published in few commits.

A Space opens a bundle by its model repo id. Only `bundle.json` is fetched up front (which pins the commit, so
every later file comes from the same upload); each other file is fetched the first time something reads it, so the
first screen needs only its own files, not the hundred megabytes of models and photos behind the other tabs. The
Hub's client does the work (`hf_hub_download`: its cache, `HF_ENDPOINT`, `HF_TOKEN`, offline mode); this module
knows nothing of a bundle's contents (the floor's `bundle.py` does).
"""

from __future__ import annotations

import sys
from pathlib import Path

MAX_FILES_PER_COMMIT = 100  # the Hub's advice for commits over HTTP


class HubError(RuntimeError):
    """The Hub could not be reached or refused; the message says what to do."""


class HubRepo:
    """One model repo at one commit, whose files arrive in the local Hub cache on first use."""

    def __init__(self, repo_id: str, revision: str | None = None):
        self.repo_id, self.revision = repo_id, revision
        self.folder: Path | None = None

    def open(self, manifest: str) -> Path:
        """Download the manifest and pin the commit it came from; returns the local snapshot folder."""
        path = self._download(manifest)
        self.folder = path.parent
        self.revision = self.folder.name  # snapshots/<commit>/: the same upload for every later file
        return self.folder

    def fetch(self, rel: str) -> Path:
        return self._download(rel)

    def _download(self, rel: str) -> Path:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(self.repo_id, rel, repo_type="model", revision=self.revision))
        except Exception as e:  # offline, unknown repo, auth: all end here
            raise HubError(
                f"could not download {rel} of {self.repo_id!r} from the Hugging Face Hub: {type(e).__name__}: {e}. "
                "Offline? Download the repo elsewhere (hf download REPO --local-dir DIR) and pass the folder."
            ) from e


def upload(folder: Path, files: list[str], repo_id: str, last: str, private: bool = False,
           token: str | None = None, api=None, extra: dict[str, bytes] | None = None) -> str:  # fmt: skip
    """Upload `files` (paths under `folder`) to a model repo in commits of at most 100 files, `last` in the final
    one: a reader that finds `last` (the manifest) finds everything it lists. `extra` (path in the repo -> bytes,
    such as the model card) goes in the final commit too. Returns the repo's URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api or HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    extra = extra or {}
    rest = [f for f in files if f != last]
    size = MAX_FILES_PER_COMMIT - len(extra)
    batches = [rest[i : i + size] for i in range(0, len(rest), size)]
    if batches and len(batches[-1]) < size:
        batches[-1].append(last)
    else:
        batches.append([last])
    for n, batch in enumerate(batches, 1):
        ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in batch]
        if n == len(batches):
            ops[-1:-1] = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=data) for rel, data in extra.items()]
        api.create_commit(repo_id, ops, repo_type="model",
                          commit_message=f"Food-101 Explorer run bundle ({n}/{len(batches)})")  # fmt: skip
        print(f"uploaded {len(batch)} files ({n}/{len(batches)} commits)", file=sys.stderr)
    return str(url)
