"""The slimming TODOs' reference answers: the solution cells of solutions/slimming/."""
from . import solution

update_bn = solution("slimming", "sparsity_train", "update_bn")
build_cfg_mask = solution("slimming", "vggprune", "build_cfg_mask")
prune_vgg = solution("slimming", "vggprune", "prune_vgg")
absorb_constants = solution("slimming", "vggprune", "absorb_constants")
