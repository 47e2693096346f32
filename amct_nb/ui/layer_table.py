"""LayerTable: the sortable, filterable per-layer settings table (an anywidget).

The front end (``layer_table.js``, ``layer_table.css`` in the repository's top-level
``widgets/``, shipped in the wheel as ``amct_nb/widgets/``) draws ``rows`` as one HTML table with an inline SVG
histogram per row and sends edits back through ``changes``. This class holds no maths and no
config: a :class:`~amct_nb.ui.panels.SettingsPanel` turns ``changes`` into QuantConfig edits.

Traits (all synced): ``rows`` (list of dicts, Python -> browser), ``filter``, ``sort_by``,
``sort_desc``, ``selection`` (layer names), ``active`` (the clicked layer), ``changes`` (the
last edit: ``[{"name", "field", "value", "seq"}]``, browser -> Python), ``render_ms`` (the
browser's last render time).
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

__all__ = ["LayerTable", "FRONT_END", "EDITABLE_FIELDS"]


def _front_end() -> Path:
    """The folder of the front-end files: amct_nb/widgets/ in an installed wheel, else the
    checkout's top-level widgets/ (a source tree or an editable install)."""
    pkg = Path(__file__).resolve().parents[1]
    installed = pkg / "widgets"
    return installed if (installed / "layer_table.js").is_file() else pkg.parent / "widgets"


FRONT_END = _front_end()
#: Row fields the front end may change, with the Python type of their value.
#: what the table edits; ``nuq_steps`` is 0 (uniform weights) or 16/32 (NUQ levels), see :func:`weight_changes`
EDITABLE_FIELDS = {"quant_enable": bool, "act_algo": str, "channel_wise": bool, "nuq_steps": int}


def weight_changes(field: str, value) -> dict:
    """The LayerConfig changes one table edit makes (``nuq_steps`` sets the weight scheme and its levels)."""
    if field != "nuq_steps":
        return {field: value}
    return {"wts_algo": "nuq_quantize", "num_steps": int(value)} if value else {"wts_algo": "arq_quantize"}


class LayerTable(anywidget.AnyWidget):
    """A table of layers; see the module docstring for its traits."""

    _esm = FRONT_END / "layer_table.js"
    _css = FRONT_END / "layer_table.css"

    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    filter = traitlets.Unicode("").tag(sync=True)
    sort_by = traitlets.Unicode("index").tag(sync=True)
    sort_desc = traitlets.Bool(False).tag(sync=True)
    selection = traitlets.List(traitlets.Unicode()).tag(sync=True)
    active = traitlets.Unicode("").tag(sync=True)
    changes = traitlets.List(traitlets.Dict()).tag(sync=True)
    render_ms = traitlets.Float(0.0).tag(sync=True)

    def visible_names(self) -> list[str]:
        """Names of the rows the filter shows (same rule as the front end: every word of the
        filter, case-insensitive, appears in the name or the op type)."""
        words = self.filter.lower().split()
        return [r["name"] for r in self.rows if all(w in f"{r['name']} {r['op_type']}".lower() for w in words)]

    def targets(self) -> list[str]:
        """The selected rows, or every shown row when none is selected."""
        return list(self.selection) or self.visible_names()
