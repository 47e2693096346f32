"""docs/migrating_from_amct.md tells the truth: its tables are parsed (nothing is listed here twice),
and for every row it calls ``same`` or ``different`` the amct-nb side exists. That means:
- Python names import, and functions take AMCT's arguments in AMCT's order;
- ``amct-nb SUB --flag`` is in the argparse parser;
- a config example loads with the project's own loader and changes what is loaded;
- the output files are written, or at least named, by the package.

Every ``not supported`` example must be refused with an error, or, where the doc says "ignored", load
and change nothing. The checkers are shown to fail on made-up names."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import importlib
import inspect
import json
import re
from pathlib import Path

import models
import numpy as np
import pytest

from amct_nb.errors import AmctError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "migrating_from_amct.md"
STATUSES = ("same", "different", "not supported")
SUPPORTED = ("same", "different")
SPAN = re.compile(r"`([^`]+)`")
PY_NAME = re.compile(r"^(?:amct_nb|QuantConfig|LayerConfig|NuqRequest|Record|LayerRecord)(?:\.\w+)+$")
SHORT = {"QuantConfig": "amct_nb.config", "LayerConfig": "amct_nb.config", "NuqRequest": "amct_nb.config",
         "Record": "amct_nb.record", "LayerRecord": "amct_nb.record"}
OUTPUT_FILE = re.compile(r"^[\w./-]+\.(?:onnx|json|txt|log|csv)$")
MISSING = object()

# the TorchScript exporter amct_nb.qat.amct uses warns on every export
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# -- the doc's tables -------------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    section: str  # the "## " heading above the table
    cells: dict  # lower-cased header -> cell text
    line: int

    def __getitem__(self, col: str) -> str:
        return self.cells.get(col, "")

    @property
    def status(self) -> str:
        return self["status"]

    def where(self) -> str:
        return f"docs/migrating_from_amct.md:{self.line} ({self['amct']})"


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def parse_tables(text: str) -> list[Row]:
    """Every row of every markdown table, with its section heading and its header's column names."""
    rows: list[Row] = []
    section, header = "", None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            section, header = line[3:].strip(), None
            continue
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if re.fullmatch(r"\|(?:\s*:?-+:?\s*\|)+", nxt):
                header = [c.lower() for c in cells]
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue  # the separator
        rows.append(Row(section, dict(zip(header, cells)), i + 1))
    return rows


@functools.cache
def doc_rows() -> tuple[Row, ...]:
    return tuple(parse_tables(DOC.read_text()))


# -- Python names -----------------------------------------------------------------------------------
def resolve(name: str):
    """What a dotted name names (``QuantConfig.x`` is short for ``amct_nb.config.QuantConfig.x``; a
    dataclass field without a class default counts), or MISSING."""
    head = name.split(".")[0]
    if head in SHORT:
        name = f"{SHORT[head]}.{name}"
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        rest = parts[i:]
        for j, attr in enumerate(rest):
            if hasattr(obj, attr):
                obj = getattr(obj, attr)
            elif (j == len(rest) - 1 and isinstance(obj, type) and dataclasses.is_dataclass(obj)
                  and attr in {f.name for f in dataclasses.fields(obj)}):
                return next(f for f in dataclasses.fields(obj) if f.name == attr)
            else:
                return MISSING
        return obj
    return MISSING


def python_problem(name: str, function: bool = False, args: tuple = ()) -> str | None:
    """Why ``name`` does not hold up (None: it does). ``function``: it must be callable (ALL_CAPS
    constants excepted) and take ``args`` as its leading parameters, in order."""
    obj = resolve(name)
    if obj is MISSING:
        return f"{name} does not exist"
    if not function or name.rsplit(".", 1)[-1].isupper():
        return None
    if not callable(obj):
        return f"{name} is not callable"
    if args:
        names = list(inspect.signature(obj).parameters)
        if names[:1] in (["self"], ["cls"]):
            names = names[1:]
        if names[: len(args)] != list(args):
            return f"{name}({', '.join(names)}) does not take AMCT's ({', '.join(args)}) in that order"
    return None


# -- the command line -------------------------------------------------------------------------------
@functools.cache
def cli_options() -> dict[str, set[str]]:
    """Sub-command -> its option strings, from amct-nb's own argparse parser."""
    from amct_nb.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {name: {o for a in p._actions for o in a.option_strings} for name, p in action.choices.items()}
    return {}


def cli_problem(command: str) -> str | None:
    """Why ``amct-nb SUB [--flag ...]`` does not hold up (None: it does); placeholders are skipped."""
    tokens = command.split()
    if tokens[:1] != ["amct-nb"] or len(tokens) < 2:
        return f"'{command}' is not an amct-nb command"
    opts = cli_options().get(tokens[1])
    if opts is None:
        return f"amct-nb has no command '{tokens[1]}'"
    bad = [t.split("=")[0] for t in tokens[2:] if t.startswith("--") and t.split("=")[0] not in opts]
    return f"amct-nb {tokens[1]} has no {', '.join(bad)}" if bad else None


def name_problems(row: Row) -> list[str]:
    """Problems with the Python names and commands in a row's amct-nb column."""
    function = "arguments" in row.cells
    args = tuple(a.split("=")[0].strip() for s in SPAN.findall(row["arguments"]) for a in s.split(",") if a.strip())
    out = []
    for span in SPAN.findall(row["amct-nb"]):
        if span.startswith("amct-nb "):
            out.append(cli_problem(span))
        elif PY_NAME.match(span):
            out.append(python_problem(span, function, args))
    return [p for p in out if p]


# -- config loaders ---------------------------------------------------------------------------------
def _merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        base[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


JSON_LAYER = "conv1"
JSON_BASE = {
    "version": 1, "batch_num": 1, "activation_offset": True, "do_fusion": True, "skip_fusion_layers": [],
    JSON_LAYER: {"quant_enable": True,
                 "activation_quant_params": {"num_bits": 8, "act_algo": "percentile", "asymmetric": True},
                 "weight_quant_params": {"num_bits": 8, "wts_algo": "arq_quantize", "channel_wise": True}},
}
CFG_BASE = "batch_num: 1\ncommon_config { percentile_quantize { } }\n"


def load_json(snippet: str | None):
    from amct_nb.config import QuantConfig

    d = copy.deepcopy(JSON_BASE)
    if snippet:
        _merge(d, json.loads(snippet.replace("LAYER", JSON_LAYER)))
    return QuantConfig.from_amct_dict(d)


def make_cfg_loader(tmp: Path):
    from amct_nb.amct.cfg import config_from_definition

    def load(snippet: str | None):
        p = tmp / "config.cfg"
        p.write_text(CFG_BASE + (snippet or "").replace("LAYER", JSON_LAYER) + "\n")
        return config_from_definition(p)

    return load


def load_record(snippet: str | None):
    from amct_nb.record import Record

    text = (snippet or 'record { key: "LAYER" value { } }').replace("LAYER", JSON_LAYER)
    return {k: (r.scale_d, r.offset_d, r.scale_w, r.offset_w, r.levels, r.bias_correction)
            for k, r in Record.from_text(text).layers.items()}  # what is applied (extra fields are only kept)


class Retrain:
    """A tiny torch model and amct-nb's loaders of AMCT's retrain .cfg and retrain JSON."""

    def __init__(self, tmp: Path):
        import torch
        from torch import nn

        import amct_nb.qat.amct as qamct

        torch.manual_seed(0)
        self.api, self.tmp = qamct, tmp
        self.model = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
        self.x = torch.randn(2, 4, 8, 8)
        self.api.create_quant_retrain_config(tmp / "base.json", self.model, self.x)
        self.base = json.loads((tmp / "base.json").read_text())
        self.layer = next(k for k, v in self.base.items() if isinstance(v, dict))

    def load_cfg(self, snippet: str | None):
        cfg = self.tmp / "retrain.cfg"
        cfg.write_text("batch_num: 1\n" + (snippet or "").replace("LAYER", self.layer) + "\n")
        self.api.create_quant_retrain_config(self.tmp / "out.json", self.model, self.x, config_defination=cfg)
        return json.loads((self.tmp / "out.json").read_text())

    def load_json(self, snippet: str | None):
        d = copy.deepcopy(self.base)
        if snippet:
            _merge(d, json.loads(snippet.replace("LAYER", self.layer)))
        path = self.tmp / "edited.json"
        path.write_text(json.dumps(d))
        m = self.api.create_quant_retrain_model(path, self.model, self.tmp / "record.txt", self.x)
        return m.cfg, m.clips


def config_problem(row: Row, load) -> str | None:
    """Why a config row's example contradicts its status (None: it agrees). The example cell holds the
    snippet and, optionally, the snippet it is compared against (else the loader's base)."""
    spans = SPAN.findall(row["example"])
    if not spans:
        return None if row["example"].strip() == "-" else "no example (write '-' when none applies)"
    snippet, ref = spans[0], (spans[1] if len(spans) > 1 else None)
    try:
        got = load(snippet)
    except AmctError as e:
        if row.status != "not supported":
            return f"the example is refused: {e}"
        return "the example is refused, but the notes say 'ignored'" if "ignored" in row["notes"].lower() else None
    same_as_ref = got == load(ref)
    if row.status in SUPPORTED:
        return "the example loads but changes nothing" if same_as_ref else None
    if "ignored" not in row["notes"].lower():
        return "not supported, but the example is accepted: say 'ignored' in the notes, or refuse it"
    return None if same_as_ref else "the notes say 'ignored' but the example changes the config: update the doc"


# -- fixtures ---------------------------------------------------------------------------------------
def _memo(load):
    """``load`` remembering what each snippet loaded to (the base is compared against many times)."""
    seen: dict = {}

    def cached(snippet):
        if snippet not in seen:
            seen[snippet] = load(snippet)
        return seen[snippet]

    return cached


@pytest.fixture(scope="module")
def loaders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("migrating")
    retrain = Retrain(tmp)
    return {"Quant config JSON": load_json, "Calibration .cfg": make_cfg_loader(tmp), "Record": load_record,
            "Retrain .cfg": _memo(retrain.load_cfg), "Retrain JSON": _memo(retrain.load_json)}


def _loader(loaders: dict, section: str):
    return next((f for k, f in loaders.items() if section.startswith(k)), None)


@pytest.fixture(scope="module")
def written_files(tmp_path_factory) -> set[str]:
    """The files a PTQ run writes with prefix NAME, relative to its output folder."""
    import amct_nb as an

    out = tmp_path_factory.mktemp("outputs")
    x = np.random.default_rng(0).normal(size=(4, 4, 16, 16)).astype(np.float32)
    an.quantize(models.conv_bn_relu(), x, progress=False).save(out, prefix="NAME")
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


# -- the tests --------------------------------------------------------------------------------------
def test_the_doc_has_its_tables_and_every_status_is_one_of_three():
    rows = doc_rows()
    sections = {r.section.split(" (")[0] for r in rows}
    for want in ("ONNX API", "PyTorch API", "Command line: `amct_onnx`", "Command line: the seeds' scripts",
                 "Quant config JSON", "Calibration .cfg", "Retrain .cfg", "Retrain JSON", "Record", "Outputs",
                 "Ascend, environment and features"):
        assert want in sections, f"no table under a heading starting '## {want}'"
    bad = [f"{r.where()}: status {r.status!r}" for r in rows if r.status not in STATUSES]
    assert not bad, bad
    assert len(rows) > 150 and sum(r.status in SUPPORTED for r in rows) > 80


def test_every_supported_function_and_command_exists():
    problems = [f"{r.where()}: {p}" for r in doc_rows() if r.status in SUPPORTED for p in name_problems(r)]
    assert not problems, "\n".join(problems)
    checked = sum(bool(SPAN.findall(r["amct-nb"])) for r in doc_rows() if r.status in SUPPORTED)
    assert checked > 80


def test_same_functions_list_their_arguments():
    """A ``same`` function row says which AMCT arguments it takes (so the order check runs)."""
    missing = [r.where() for r in doc_rows() if "arguments" in r.cells and r.status == "same"
               and not r["arguments"] and any(inspect.isfunction(resolve(s)) for s in SPAN.findall(r["amct-nb"]))]
    assert not missing, missing


def test_config_examples_agree_with_their_status(loaders):
    rows = [r for r in doc_rows() if _loader(loaders, r.section)]
    assert all("example" in r.cells for r in rows), "every config table has an example column"
    problems = [f"{r.where()}: {p}" for r in rows if (p := config_problem(r, _loader(loaders, r.section)))]
    assert not problems, "\n".join(problems)
    assert sum(bool(SPAN.findall(r["example"])) for r in rows) > 60


def test_output_files_are_written_or_named_by_the_package(written_files):
    sources = "\n".join(p.read_text() for p in (ROOT / "amct_nb").rglob("*.py"))
    problems = []
    for r in doc_rows():
        if not r.section.startswith("Outputs") or r.status not in SUPPORTED:
            continue
        for f in (s for s in SPAN.findall(r["amct-nb"]) if OUTPUT_FILE.match(s)):
            if f not in written_files and Path(f).name.removeprefix("NAME_") not in sources:
                problems.append(f"{r.where()}: {f} is neither written by a PTQ run nor named in amct_nb")
    assert not problems, "\n".join(problems)
    assert {"NAME_deploy_model.onnx", "tmp/record.txt"} <= written_files


def test_every_public_amct_name_is_in_the_doc():
    import amct_nb.amct
    import amct_nb.qat.amct

    text = DOC.read_text()
    missing = [n for m in (amct_nb.amct, amct_nb.qat.amct) for n in m.__all__ if f"`{n}`" not in text
               and f".{n}`" not in text]
    assert not missing, f"not in docs/migrating_from_amct.md: {missing}"


def test_the_checkers_catch_made_up_names(tmp_path):
    assert python_problem("amct_nb.amct.create_quant_config", True,
                          ("config_file", "model_file", "skip_layers")) is None
    assert python_problem("amct_nb.amct.no_such_function") is not None
    assert python_problem("QuantConfig.no_such_field") is not None
    assert python_problem("QuantConfig.skip_layers") is None  # a default_factory field
    assert python_problem("amct_nb.amct.save_model", True, ("modfied_onnx_file",)) is not None
    assert python_problem("amct_nb.amct.save_model", True, ("record_file", "modified_onnx_file")) is not None
    assert python_problem("amct_nb.amct.AMCT_SO", True) is None
    assert cli_problem("amct-nb calibrate MODEL --nuq 32") is None
    assert cli_problem("amct-nb calibrate --no-such-flag") is not None
    assert cli_problem("amct-nb no-such-command") is not None
    assert cli_problem("amct_onnx calibration --model m.onnx") is not None
    rows = parse_tables("## Quant config JSON\n\n| amct | amct-nb | status | notes | example |\n|---|---|---|---|---|\n"
                        "| `made_up` | `QuantConfig.made_up` | same | | `{\"LAYER\": {\"quant_enable\": true}}` |\n"
                        "| `x` | | maybe | | - |\n")
    assert [r.status for r in rows] == ["same", "maybe"]
    assert name_problems(rows[0]) == ["QuantConfig.made_up does not exist"]
    assert config_problem(rows[0], load_json) == "the example loads but changes nothing"
    typo = Row("Quant config JSON", {"status": "same", "notes": "",
                                     "example": '`{"LAYER": {"quant_enabel": false}}`'}, 0)
    assert "did you mean 'quant_enable'" in config_problem(typo, load_json)  # refused, naming the fix
    cfg_row = Row("Calibration .cfg", {"status": "same", "notes": "", "example": "`no_such_field: 1`"}, 0)
    assert config_problem(cfg_row, make_cfg_loader(tmp_path)) is not None
    refused = Row("Record", {"status": "same", "notes": "", "example": '`record { key: "a" bogus { } }`'}, 0)
    assert config_problem(refused, load_record).startswith("the example is refused")
    quiet = Row("Record", {"status": "not supported", "notes": "Refused.",
                           "example": '`record { key: "LAYER" value { shift_bit: 1 } }`'}, 0)
    assert config_problem(quiet, load_record) is not None  # accepted, yet the doc says refused
