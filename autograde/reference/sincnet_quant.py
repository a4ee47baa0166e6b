"""The quantization TODOs' reference answers: the solution cells of solutions/sincnet_quant/sincnet_quant.ipynb
(its build_cfg_mask is vggprune's, pasted: autograde.reference.slimming.build_cfg_mask)."""
from . import solution

STEQuantize = solution("sincnet_quant", "sincnet_quant", "ste_quantize", "STEQuantize")
weight_scale = solution("sincnet_quant", "sincnet_quant", "weight_scale")
