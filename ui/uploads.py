"""File inputs that take only what the browser uploaded.

Gradio hands an event handler whatever path the request names and copies it into its cache
first, so a direct API call could name /etc/passwd or a symlink to the users file. Every file
input of the studio is an UploadedFile: each path is checked by core.paths.received_upload
against Gradio's upload folder before Gradio reads or copies it, and again before the handler
runs.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from gradio.data_classes import ListFiles

from core.errors import RefineryError
from core.paths import received_upload


class UploadedFile(gr.File):
    def _received(self, path: str | Path) -> None:
        try:
            received_upload(Path(self.GRADIO_CACHE), path)
        except RefineryError as error:
            raise gr.Error(error.message) from None

    def move_resource_to_block_cache(self, url_or_file_path: str | Path | None) -> str | None:
        if url_or_file_path is not None:
            self._received(url_or_file_path)
        return super().move_resource_to_block_cache(url_or_file_path)

    async def async_move_resource_to_block_cache(
        self, url_or_file_path: str | Path | None
    ) -> str | None:
        if url_or_file_path is not None:
            self._received(url_or_file_path)
        return await super().async_move_resource_to_block_cache(url_or_file_path)

    def preprocess(self, payload):
        for item in payload if isinstance(payload, ListFiles) else [payload]:
            if item is not None:
                self._received(item.path)
        return super().preprocess(payload)
