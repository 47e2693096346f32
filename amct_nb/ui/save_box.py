"""Save AMCT's outputs from the Workbench: an output folder, a name, a button, the written files.

The calibrate panel holds one; it writes the session's current result (the last calibration,
rebuild or auto calibration) with :meth:`amct_nb.QuantResult.save`, so the files are the ones
``amct-nb calibrate`` writes.
"""

from __future__ import annotations

import html
import logging
import traceback
from pathlib import Path

import ipywidgets as widgets

from amct_nb.errors import AmctError, DataError

from .session import Session

__all__ = ["SaveBox", "DEFAULT_OUTPUT"]

log = logging.getLogger("amct_nb.ui")

#: Where the Workbench saves unless told otherwise (relative to the kernel's working folder).
DEFAULT_OUTPUT = "outputs/workbench"


class SaveBox(widgets.VBox):
    """Output folder and name boxes and a "Save AMCT outputs" button (enabled once there is a result)."""

    def __init__(self, session: Session, folder=DEFAULT_OUTPUT):
        self.session = session
        wide = {"description_width": "initial"}
        self.folder = widgets.Text(value=str(folder), description="output folder", style=wide,
                                   layout=widgets.Layout(width="460px"))
        self.prefix = widgets.Text(value="", placeholder=session.prepared.name, description="name", style=wide,
                                   layout=widgets.Layout(width="240px"))
        self.save_button = widgets.Button(description="Save AMCT outputs", icon="save",
                                          disabled=session.result is None, layout=widgets.Layout(width="auto"))
        self.save_button.add_class("amct-save-button")
        self.files = widgets.HTML("")
        super().__init__([widgets.HBox([self.folder, self.prefix, self.save_button]), self.files])
        self.add_class("amct-save")
        self.save_button.on_click(lambda _: self._click())
        session.on("result", lambda *_: setattr(self.save_button, "disabled", self.session.result is None))

    def save(self, folder=None, prefix: str | None = None) -> dict[str, Path]:
        """Write the current result's AMCT files into ``folder`` (default: the folder box); returns the paths."""
        result = self.session.result
        if result is None:
            raise DataError("nothing to save yet: calibrate first (the Calibrate button)")
        folder = str(folder if folder is not None else self.folder.value).strip()
        if not folder:
            raise DataError("no output folder: type a folder into the 'output folder' box")
        paths = result.save(Path(folder).expanduser(), prefix=(prefix or self.prefix.value.strip() or None))
        items = "".join(f"<li><code>{html.escape(str(p))}</code> <span style='color:#666'>({html.escape(k)})</span>"
                        "</li>" for k, p in paths.items())
        self.files.value = (f"<div class='amct-saved' style='font-size:12px;color:#1a7f37'>saved {len(paths)} files:"
                            f"<ul style='margin:2px 0'>{items}</ul></div>")
        return paths

    def _click(self) -> None:
        self.files.value = "<div style='font-size:12px;color:#9a6700'>saving...</div>"
        try:
            self.save()
        except Exception as e:
            if not isinstance(e, AmctError):
                log.error("%s", traceback.format_exc())
            text = str(e) if isinstance(e, AmctError) else f"{type(e).__name__}: {e}"
            self.files.value = (f"<div class='amct-status amct-status-error' style='font-size:12px;color:#b42318'>"
                                f"{html.escape(text)}</div>")
