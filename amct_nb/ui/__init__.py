"""amct-nb in a notebook: a Workbench that steps through load, calibrate, histograms, settings, compare.

    from amct_nb.ui import Workbench
    wb = Workbench("fmnist-resnet")   # or a path with calibration_data=..., eval_data=(x, labels), classes=...
    wb                                # shows the panels; each also works alone (ModelPanel(...), ...)

This package imports ipywidgets, anywidget and matplotlib (``pip install 'amct-nb[notebook]'``);
``import amct_nb`` does not. The widgets hold no maths: they call the engine's public API through
a :class:`Session`, which also works without Jupyter.
"""

from amct_nb.analysis import Comparer, Comparison, LayerError

from .auto_panel import AutoCalibrationPanel
from .layer_table import LayerTable
from .panels import CalibratePanel, ComparePanel, HistogramPanel, ModelPanel, SettingsPanel
from .session import Session
from .workbench import Workbench

__all__ = [
    "Workbench", "Session", "ModelPanel", "CalibratePanel", "HistogramPanel", "SettingsPanel", "ComparePanel",
    "LayerTable", "Comparer", "Comparison", "LayerError", "AutoCalibrationPanel",
]
