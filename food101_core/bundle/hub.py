"""A bundle on the Hugging Face Hub: opened by repo id (files fetched on first read, each checked against
bundle.json), and published in commits of at most 100 files, bundle.json last."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..hub import HubError, HubRepo, upload
from .card import model_card
from .layout import BundleError
from .read import Bundle

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def load_bundle(ref: str | os.PathLike, verify: bool = True) -> Bundle:
    """A bundle from a local folder, or from a Hugging Face Hub model repo ("owner/name"), whose files are then
    downloaded when first read (bundle.json at once)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return Bundle(path, verify)
    if not _REPO_ID.match(str(ref)):
        raise BundleError(f"{ref}: no such folder, and not a Hugging Face Hub repo id (owner/name)")
    repo = HubRepo(str(ref))
    try:
        folder = repo.open("bundle.json")
    except HubError as e:
        raise BundleError(str(e)) from e
    return Bundle(folder, verify, fetch=repo.fetch)


def publish_bundle(path: Path, repo_id: str, private: bool = False, token: str | None = None, api=None,
                   space: str | None = None, license: str = "apache-2.0") -> str:  # fmt: skip
    """Upload a verified bundle to a Hub model repo in commits of at most 100 files, bundle.json last, with its
    model card as the repo's README.md (`space`: the app that serves it, named on the card); returns the repo URL."""
    b = Bundle(path)  # refuse to publish a broken or format-1 bundle
    card = str(model_card(b, repo_id, space=space, license=license)).encode()
    return upload(b.path, sorted(b.files), repo_id, last="bundle.json", private=private, token=token, api=api,
                  extra={"README.md": card})  # fmt: skip
