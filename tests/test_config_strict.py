"""AMCT configs are read strictly: a key amct-nb does not know is refused with a close match and the accepted
keys; an AMCT field for a feature amct-nb does not have loads only at AMCT's default (so AMCT's generated files
keep loading) and is refused otherwise, saying why and what to write; what amct-nb can honour, it honours. The
files amct-nb writes itself keep round-tripping."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import models
import onnx
import pytest

import amct_nb as an
import amct_nb.amct as amct
from amct_nb.amct.cfg import config_from_definition
from amct_nb.amct.retrain_cfg import check_retrain_json, read_retrain_cfg, retrain_layers
from amct_nb.config import QuantConfig, UnsupportedSettingError
from amct_nb.errors import ConfigError, NotSupportedError
from amct_nb.record import Record

# AMCT's create_quant_config output for one layer, IFMR defaults as float32 values come back from its proto
AMCT_LAYER = {"quant_enable": True,
              "activation_quant_params": {"num_bits": 8, "act_algo": "ifmr", "max_percentile": 0.9999989867210388,
                                          "min_percentile": 0.999999, "search_range": [0.699999988079071, 1.3],
                                          "search_step": 0.009999999776482582, "asymmetric": True},
              "weight_quant_params": {"num_bits": 8, "wts_algo": "arq_quantize", "channel_wise": True}}
AMCT_JSON = {"version": 1, "batch_num": 2, "activation_offset": True, "joint_quant": False, "tensor_quantize": [],
             "do_fusion": True, "skip_fusion_layers": [], "conv1": AMCT_LAYER}


def _json(**layer_act):
    d = copy.deepcopy(AMCT_JSON)
    d["conv1"]["activation_quant_params"].update(layer_act)
    return d


def _refused(d, *phrases, err=ConfigError):
    with pytest.raises(err) as e:
        QuantConfig.from_amct_dict(d, where="c.json")
    for ph in phrases:
        assert ph in str(e.value), (ph, str(e.value))
    return str(e.value)


# -- config.json ------------------------------------------------------------------------------------
def test_amct_json_at_its_defaults_loads():
    cfg = QuantConfig.from_amct_dict(AMCT_JSON)
    assert cfg.batch_num == 2 and cfg.layers["conv1"].act_algo == "mse" and cfg.layers["conv1"].asymmetric is True
    hfmg = copy.deepcopy(AMCT_JSON)
    hfmg["conv1"]["activation_quant_params"] = {"num_bits": 8, "act_algo": "hfmg", "num_of_bins": 4096}
    assert QuantConfig.from_amct_dict(hfmg).layers["conv1"].act_algo == "mse"


def test_unknown_json_keys_name_the_place_and_a_close_match():
    d = copy.deepcopy(AMCT_JSON)
    d["conv1"]["quant_enabel"] = False
    msg = _refused(d, "c.json: layer 'conv1'", "'quant_enabel'", "did you mean 'quant_enable'", "weight_quant_params")
    assert "dmq_balancer_param" in msg  # the accepted keys are listed
    _refused(_json(asymetric=False), "layer 'conv1': activation_quant_params", "did you mean 'asymmetric'")
    d = copy.deepcopy(AMCT_JSON)
    d["conv1"]["weight_quant_params"]["chanel_wise"] = False
    _refused(d, "weight_quant_params", "did you mean 'channel_wise'")
    _refused({**AMCT_JSON, "batch_nun": 4}, "unknown key 'batch_nun'", "did you mean 'batch_num'", "layer name")
    _refused({**AMCT_JSON, "amct_nb": {"saturaton_guard": "off"}}, "amct_nb", "did you mean 'saturation_guard'")
    _refused({**AMCT_JSON, "amct_nb": {"default": {"act_algoo": "mse"}}}, "amct_nb: default", "did you mean 'act_algo'")
    _refused({**AMCT_JSON, "amct_nb": {"skip_layer_types": ["Gem"]}}, "skip_layer_types", "did you mean 'Gemm'")


@pytest.mark.parametrize("field, value, default", [
    ("max_percentile", 0.99, "0.999999"), ("min_percentile", 0.5, "0.999999"),
    ("search_range", [0.5, 1.5], "[0.7, 1.3]"), ("search_step", 0.02, "0.01"), ("num_of_bins", 1024, "4096")])
def test_ifmr_and_hfmg_parameters_load_only_at_amct_defaults(field, value, default):
    msg = _refused(_json(**{field: value}), f"{field} {json.dumps(value)} is not supported by amct-nb",
                   f"remove it or set it to {default}", "layer 'conv1'", err=UnsupportedSettingError)
    assert "(" in msg  # says why
    with pytest.raises(NotSupportedError):  # also a NotSupportedError
        QuantConfig.from_amct_dict(_json(**{field: value}))


def test_num_of_bins_outside_amcts_values_is_invalid():
    _refused(_json(num_of_bins=7), "num_of_bins 7 is not one of AMCT's values 1024, 2048, 4096, 8192")


def test_features_amct_nb_lacks_are_refused_in_json():
    _refused({**AMCT_JSON, "joint_quant": True}, "joint_quant true is not supported", "set it to false")
    _refused({**AMCT_JSON, "tensor_quantize": [{"layer_name": "conv1", "input_index": 0}]},
             "tensor_quantize is not supported", "set it to []")
    d = copy.deepcopy(AMCT_JSON)
    d["conv1"]["dmq_balancer_param"] = 0.5
    _refused(d, "layer 'conv1': dmq_balancer_param is not supported", "DMQ", "remove it")


def test_json_fields_that_would_change_nothing_are_refused():
    _refused(_json(act_algo="mse", percentile=99.9), "percentile applies only to act_algo 'percentile'")
    d = copy.deepcopy(AMCT_JSON)
    d["conv1"]["weight_quant_params"]["num_steps"] = 16
    _refused(d, "num_steps applies only to wts_algo 'nuq_quantize'")
    d = copy.deepcopy(AMCT_JSON)
    d["conv1"]["quant_enable"] = "false"
    _refused(d, "quant_enable \"false\" must be true or false")


def test_amct_nb_configs_round_trip():
    m = models.conv_bn_relu()
    layers = an.prepare(m).layers
    cfg = QuantConfig(skip_layer_types=["MatMul"], type_overrides={"Gemm": an.LayerConfig(channel_wise=False)})
    cfg.set("conv1", act_algo="percentile", percentile=99.9)
    cfg.set("fc", wts_algo="nuq_quantize", num_steps=16)
    for text in (cfg.to_json(), cfg.to_json(layers)):
        back = QuantConfig.from_amct_dict(json.loads(text))
        assert back.to_json() == QuantConfig.from_amct_dict(json.loads(back.to_json())).to_json()
        assert back.layers["fc"].num_steps == 16 and back.skip_layer_types == ["MatMul"]


# -- the .cfg -----------------------------------------------------------------------------------------
def _cfg(tmp_path, text):
    p = tmp_path / "q.cfg"
    p.write_text(text)
    return config_from_definition(p)


def _cfg_refused(tmp_path, text, *phrases, err=ConfigError):
    with pytest.raises(err) as e:
        _cfg(tmp_path, text)
    for ph in phrases:
        assert ph in str(e.value), (ph, str(e.value))


AMCT_CFG = """batch_num: 2
activation_offset: true
joint_quant: false
skip_layers: "fc"
common_config {
    arq_quantize { channel_wise: true quant_bits: 8 }
    ifmr_quantize { search_range_start: 0.7 search_range_end: 1.3 search_step: 0.01
                    max_percentile: 0.999999 min_percentile: 0.999999 asymmetric: true dst_type: INT8 }
}
override_layer_types { layer_type: "Gemm" calibration_config { arq_quantize { channel_wise: false }
                                                               hfmg_quantize { num_of_bins: 4096 asymmetric: false } } }
"""


def test_amct_cfg_at_its_defaults_loads_and_makes_a_config(tmp_path):
    cfg = _cfg(tmp_path, AMCT_CFG)
    assert cfg.default.act_algo == "mse" and cfg.default.asymmetric is True
    assert cfg.type_overrides["Gemm"].asymmetric is False  # hfmg_quantize.asymmetric is honoured
    mp = tmp_path / "m.onnx"
    onnx.save(models.conv_bn_relu(), mp)
    (tmp_path / "q.cfg").write_text(AMCT_CFG)
    amct.create_quant_config(tmp_path / "c.json", mp, config_defination=tmp_path / "q.cfg")
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["fc"]["activation_quant_params"]["asymmetric"] is False and d["fc"]["quant_enable"] is False
    amct.quantize_model(tmp_path / "c.json", mp, tmp_path / "mod.onnx", tmp_path / "rec.txt")  # the JSON loads


@pytest.mark.parametrize("text, phrases", [
    ("batch_nun: 2", ["unknown field 'batch_nun'", "did you mean 'batch_num'", "common_config"]),
    ("common_config { ifmr_quantize { serch_step: 0.02 } }",
     ["common_config: ifmr_quantize", "did you mean 'search_step'"]),
    ('override_layer_configs { layer_name: "conv1" calibration_config { arq_quantize { chanel_wise: false } } }',
     ["override_layer_configs 'conv1': calibration_config: arq_quantize", "did you mean 'channel_wise'"]),
    ("batch_num: 2.5", ["batch_num 2.5 must be an integer"]),
    ("common_config: 3", ["common_config is a block"]),
    ("common_config { ifmr_quantize { } hfmg_quantize { } }", ["ifmr_quantize and hfmg_quantize are alternatives"]),
    ('skip_layer_types: "Gem"', ["skip_layer_types", "did you mean 'Gemm'"]),
    ('override_layer_configs { layer_name: "conv1" }', ["needs a layer_name and a calibration_config"]),
    ("common_config { hfmg_quantize { num_of_bins: 7 } }", ["num_of_bins 7 is not one of AMCT's values"]),
])
def test_cfg_mistakes_are_refused(tmp_path, text, phrases):
    _cfg_refused(tmp_path, text, "q.cfg", *phrases)


@pytest.mark.parametrize("text, phrase, fix", [
    ("joint_quant: true", "joint_quant true is not supported", "set it to false"),
    ("fakequant_precision_mode: FORCE_FP16_QUANT", "fakequant_precision_mode is not supported", "remove it"),
    ('tensor_quantize { layer_name: "conv1" input_index: 0 }', "tensor_quantize is not supported", "remove it"),
    ("common_config { ifmr_quantize { search_range_start: 0.8 } }", "search_range_start 0.8", "set it to 0.7"),
    ("common_config { ifmr_quantize { search_range_end: 1.2 } }", "search_range_end 1.2", "set it to 1.3"),
    ("common_config { ifmr_quantize { search_step: 0.02 } }", "search_step 0.02", "set it to 0.01"),
    ("common_config { ifmr_quantize { max_percentile: 0.99 } }", "max_percentile 0.99", "set it to 0.999999"),
    ("common_config { ifmr_quantize { min_percentile: 0.99 } }", "min_percentile 0.99", "set it to 0.999999"),
    ("common_config { ifmr_quantize { dst_type: INT16 } }", "dst_type INT16", "set it to INT8"),
    ("common_config { hfmg_quantize { dst_type: INT16 } }", "dst_type INT16", "set it to INT8"),
    ("common_config { hfmg_quantize { num_of_bins: 8192 } }", "num_of_bins 8192", "set it to 4096"),
    ("common_config { ada_quantize { num_iteration: 10 } }", "ada_quantize is not supported", "use arq_quantize"),
    ("common_config { dmq_balancer { migration_strength: 0.5 } }", "dmq_balancer is not supported", "remove it"),
    ('override_layer_types { layer_type: "AveragePool" calibration_config { } }', "'AveragePool' is not supported",
     "remove it"),
])
def test_cfg_features_amct_nb_lacks_are_refused(tmp_path, text, phrase, fix):
    _cfg_refused(tmp_path, text, phrase, "not supported by amct-nb (", fix, err=UnsupportedSettingError)


def test_cfg_skip_of_a_type_amct_nb_leaves_float_is_accepted(tmp_path):
    assert _cfg(tmp_path, 'skip_layer_types: "AveragePool"').skip_layer_types == ["AveragePool"]


# -- the record ---------------------------------------------------------------------------------------
def test_record_fields():
    text = 'record { key: "a" value { scale_d: 0.5 shift_bit: 1 skip_fusion: true wts_type: "INT4" channels: 3 } }'
    assert Record.from_text(Record.from_text(text).to_text()).layers["a"].extra["shift_bit"] == ["1"]
    assert Record.from_text('record { key: "a" value { tensor_balance_factor: 1.0 act_type: "INT8" } }').layers
    for field, phrase in (("scal_d: 0.5", "did you mean 'scale_d'"),
                          ("tensor_balance_factor: 0.5", "set it to 1"),
                          ('act_type: "INT16"', "set it to INT8"),
                          ('fakequant_precision_mode: "FORCE_FP16_QUANT"', "set it to DEFAULT")):
        with pytest.raises(ConfigError, match=phrase):
            Record.from_text(f'record {{ key: "a" value {{ {field} }} }}', where="rec.txt")


# -- retrain configs ------------------------------------------------------------------------------------
LAYERS = [SimpleNamespace(name=n, op_type=t, quantizable=True) for n, t in
          (("/c1/Conv", "Conv"), ("/c2/Conv", "Conv"), ("/fc/Gemm", "Gemm"))]


def _retrain(tmp_path, text):
    p = tmp_path / "r.cfg"
    p.write_text(text)
    return retrain_layers(read_retrain_cfg(p), LAYERS)


def test_retrain_cfg_types_and_overrides_are_honoured(tmp_path):
    d = _retrain(tmp_path, """batch_num: 2
retrain_weight_quant_config { arq_retrain { channel_wise: true } }
quant_skip_types: "Linear"
override_layer_types { layer_type: "Conv2d" retrain_weight_quant_config { ulq_retrain { dst_type: INT4 } } }
override_layer_configs { layer_name: "/c2/Conv" retrain_weight_quant_config { arq_retrain { channel_wise: false } }
                         retrain_data_quant_config { ulq_quantize { clip_max_min { clip_max: 3.0 clip_min: 0.0 }
                                                                    fixed_min: true } } }
""")
    assert d["/fc/Gemm"]["retrain_enable"] is False and d["/c1/Conv"]["retrain_enable"] is True
    assert d["/c1/Conv"]["retrain_weight_config"] == {"algo": "ulq_retrain", "channel_wise": True, "dst_type": "INT4"}
    assert d["/c2/Conv"]["retrain_weight_config"] == {"algo": "arq_retrain", "channel_wise": False, "dst_type": "INT4"}
    assert d["/c2/Conv"]["retrain_data_config"] == {"algo": "ulq_quantize", "dst_type": "INT8", "clip_max": 3.0,
                                                    "clip_min": 0.0, "fixed_min": True}
    check_retrain_json(d)
    assert retrain_layers(read_retrain_cfg(None), LAYERS)["/fc/Gemm"] == {
        "retrain_enable": True, "retrain_data_config": {"algo": "ulq_quantize", "dst_type": "INT8"},
        "retrain_weight_config": {"algo": "arq_retrain", "channel_wise": True, "dst_type": "INT8"}}


@pytest.mark.parametrize("text, phrase", [
    ("skip_layer: \"x\"", "did you mean 'skip_layers'"),
    ("fakequant_precision_mode: FORCE_FP16_QUANT", "fakequant_precision_mode is not supported by amct-nb"),
    ('skip_layer_types: "Conv2"', "did you mean"),
    ('override_layer_types { layer_type: "LSTM" }', "'LSTM' is not supported by amct-nb"),
    ('override_layer_configs { layer_name: "/c9/Conv" }', "has no quantizable layer of (did you mean"),
    ('override_layer_configs { layer_name: "/c1/Conv" prune_config { } }', "prune_config is not supported"),
    ("retrain_data_quant_config { ulq_quantize { clip_max_min { clip_max: 3.0 } } }", "needs both clip_max and"),
    ("retrain_weight_quant_config { arq_retrain { } ulq_retrain { } }", "alternatives"),
])
def test_retrain_cfg_mistakes_are_refused(tmp_path, text, phrase):
    with pytest.raises(ConfigError) as e:
        _retrain(tmp_path, text)
    assert phrase in str(e.value)


def _retrain_json(**data):
    return {"version": 1, "batch_num": 1, "/c1/Conv": {"retrain_enable": True, "retrain_data_config":
                                                       {"algo": "ulq_quantize", **data}}}


def test_retrain_json_is_checked():
    check_retrain_json(_retrain_json(fixed_min=False))  # amct-nb learns the zero point anyway
    check_retrain_json(_retrain_json(clip_max=2.0, clip_min=0.0, fixed_min=True))
    for d, phrase in ((_retrain_json(algo="ifmr"), "ulq_quantize is AMCT's only"),
                      (_retrain_json(fixed_min=True), "fixed_min true without clip_max/clip_min is not supported"),
                      (_retrain_json(clip_max=2.0, clip_min=-1.0, fixed_min=True), "set clip_min to 0"),
                      (_retrain_json(clip_mx=2.0), "did you mean 'clip_max'"),
                      ({"version": 1, "batch_nun": 2}, "did you mean 'batch_num'"),
                      ({"/c1/Conv": {"retrain_enabel": False}}, "did you mean 'retrain_enable'")):
        with pytest.raises(ConfigError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
            check_retrain_json(d)


def test_generated_retrain_json_passes_its_check():
    d = {"version": 1, "batch_num": 1, **retrain_layers(read_retrain_cfg(None), LAYERS)}
    check_retrain_json(json.loads(json.dumps(d)))
