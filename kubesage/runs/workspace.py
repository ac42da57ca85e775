"""What one command works in, opened once: a target's config, the local config it names (data
mounts, image tags, trackers), the run store, with abandoned runs swept, and the artifact store.

Every command that reads or writes runs opens one ``Workspace`` and passes it down, so a config
file is read once and the store opened once per command, whichever paths the command takes. The
store opens on first use: a command refused before it runs anything leaves no store behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubesage.runs.step_user import share_existing
from kubesage.runs.sweep import sweep

if TYPE_CHECKING:
    from kubesage.config.local import LocalConfig
    from kubesage.runs.record import RunRecord
    from kubesage.store import RunStore
    from kubesage.store.artifacts import ArtifactStore


class Workspace:
    """A target config (``config``), its local config (``local``) and the run store."""

    def __init__(self, config: Any, local: LocalConfig, store: RunStore | None = None,
                 config_path: str | None = None, *,
                 clean_up: Callable[[RunRecord], int] | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        """``clean_up`` removes what an abandoned run left behind (the target that started it
        does); ``say`` tells the user about each run found abandoned."""
        self.config = config
        self.local = local
        self.config_path = config_path
        self._store = store
        self._artifacts: ArtifactStore | None = None
        self._clean_up = clean_up
        self._say = say

    @classmethod
    def open(cls, config: Any, local: LocalConfig, config_path: str | None = None, *,
             clean_up: Callable[[RunRecord], int] | None = None,
             say: Callable[[str], None] | None = None) -> Workspace:
        """The workspace of ``config``; its store opens when first used."""
        return cls(config, local, None, config_path, clean_up=clean_up, say=say)

    @property
    def store(self) -> RunStore:
        """The run store of ``local``, opened once; runs whose process died are marked
        abandoned when it opens."""
        if self._store is None:
            from kubesage.store import RunStore, StoreReadOnly  # SQLAlchemy: when first used

            os.makedirs(self.local.store, exist_ok=True)
            share_existing(self.local.store)  # steps running as a non-root user write in it
            self._store = RunStore(self.local.store_url, say=self._say)
            try:
                sweep(self._store, say=self._say, clean_up=self._clean_up)
            except StoreReadOnly:  # a read-only role lists and shows; a writer marks them
                pass
        return self._store

    @property
    def artifacts(self) -> ArtifactStore:
        """Where artifacts are shared (``local.artifacts_url``), with this machine's cache."""
        if self._artifacts is None:
            from kubesage.store.artifacts import open_artifacts

            self._artifacts = open_artifacts(self.local.artifacts_url, self.local.store)
        return self._artifacts

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
