"""File inputs that take only what the browser uploaded.

Gradio hands an event handler whatever path the request names and copies it into its cache
first, so a direct API call could name /etc/passwd or a symlink to the users file. Every file
input of the studio comes from `uploaded_file`: each path is checked by
core.paths.received_upload against Gradio's upload folder before Gradio reads or copies it,
and again before the handler runs. (A gr.File subclass would make Gradio write a .pyi stub
next to this file, so the checks wrap the instance's own methods.)
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from gradio.data_classes import ListFiles

from core.errors import RefineryError
from core.paths import received_upload


def uploaded_file(**options) -> gr.File:
    """A gr.File input (same options) that refuses anything but an upload."""
    component = gr.File(**options)
    move, move_async, preprocess = (component.move_resource_to_block_cache,
                                    component.async_move_resource_to_block_cache,
                                    component.preprocess)

    def received(path: str | Path | None) -> None:
        if path is None:
            return
        try:
            received_upload(Path(component.GRADIO_CACHE), path)
        except RefineryError as error:
            raise gr.Error(error.message) from None

    def checked_move(path):
        received(path)
        return move(path)

    async def checked_move_async(path):
        received(path)
        return await move_async(path)

    def checked_preprocess(payload):
        for item in payload if isinstance(payload, ListFiles) else [payload]:
            received(getattr(item, "path", None))
        return preprocess(payload)

    component.move_resource_to_block_cache = checked_move
    component.async_move_resource_to_block_cache = checked_move_async
    component.preprocess = checked_preprocess
    return component
