"""Known-wrong STEQuantize and weight_scale implementations (MUTANTS: each must lose the points of its grade
cell, test_ste_quantize or test_weight_scale, and only those) and wrong workflows of the notebook (ARTIFACT_MUTANTS: each must lose the points of its target cell,
test_float, test_pruned or test_qat, and only those).

The trained-model checks rebuild the submitted checkpoints with the reference quantizer, so a wrong
STEQuantize (with the reference work's artifacts) loses nothing there.
"""
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from autograde.reference.sincnet_quant import STEQuantize as ReferenceSTE
from autograde.reference.sincnet_quant import weight_scale as reference_weight_scale
from autograde.reference.slimming import build_cfg_mask as reference_build_cfg_mask
from lib import profile
from lib.artifacts import SINCNET_FLOAT, SINCNET_PRUNED, SINCNET_QUANT, checkpoint_file, history_file
from lib.checkpoint import load_model, save_checkpoint
from lib.data import speech
from lib.models import SincNet
from lib.models.quant import QuantAct, QuantSincNet, quantize_sincnet, quantized_layers
from lib.slimming import check_cfg_mask, prune_sincnet, zero_pruned_channels
from lib.train import fit

from autograde.reference import define

from . import ArtifactMutant, Edit, Mutant, MutantBuildError, copy_run, patched, plant_code, start_from
from .slimming import KEEPS_AT_THRESHOLD, PER_LAYER_THRESHOLD


def _ste(name: str, *edits: Edit) -> Mutant:
    """The reference STEQuantize cell with `edits` made."""
    return Mutant(name, "sincnet_quant", "ste_quantize", "test_ste_quantize",
                  patched("sincnet_quant", "sincnet_quant", "ste_quantize", *edits))


_STRAIGHT_THROUGH = "return grad_output * inside,"   # backward's gradient for x

MUTANTS = [
    _ste("identity backward everywhere (no zero outside the range)", (_STRAIGHT_THROUGH, "return grad_output,")),
    _ste("2**b + 1 levels (step = (hi - lo) / 2**bits)", ("(2 ** bits - 1)", "(2 ** bits)")),
    _ste("no clipping", ("clipped = torch.minimum(torch.maximum(x, lo), hi)", "clipped = x")),
    _ste("gradient blocked (zero everywhere)", (_STRAIGHT_THROUGH, "return torch.zeros_like(grad_output),")),
    _ste("floor instead of round", ("torch.round(", "torch.floor(")),
    # Passed every case before the one-signed ranges: each range held 0, which this widening leaves alone.
    _ste("range widened to include 0",
         ("ctx.save_for_backward(x, lo, hi)",
          "lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)   # the range must hold 0\n"
          "        ctx.save_for_backward(x, lo, hi)")),
]


def _scale(name: str, *edits: Edit) -> Mutant:
    """The reference weight_scale cell with `edits` made."""
    return Mutant(name, "sincnet_quant", "weight_scale", "test_weight_scale",
                  patched("sincnet_quant", "sincnet_quant", "weight_scale", *edits))


_RMS = "clip_std * w.pow(2).mean().sqrt()"   # clip_std * sigma, sigma = sqrt(mean(w**2))

MUTANTS += [
    _scale("max w instead of max |w|", ("r = w.abs().max()", "r = w.max()")),
    _scale("sigma = std of |w| instead of sqrt(mean(w**2))", (_RMS, "clip_std * w.abs().std()")),
    _scale("int8-style r / (2**(b-1) - 1) instead of 2**b - 1 steps across [-r, r]",
           ("2 * r.clamp_min(1e-8) / (2 ** bits - 1)", "r.clamp_min(1e-8) / (2 ** (bits - 1) - 1)")),
    _scale("clip_std * sigma even above max|w|", (f"torch.minimum(r, {_RMS})", _RMS)),
]


# ------------------------------------------------------------------------------------ artifact mutants
#
# Wrong workflows of sincnet_quant.ipynb. The notebook is the reference's (the build_cfg_mask mutants: with
# the wrong build_cfg_mask that ran); the artifacts are redone from the step the mistake is in: a pruned model
# of another cfg is fine-tuned and quantization-aware trained again, as the notebook's later cells do.


def _settings() -> tuple[dict[str, Any], dict[str, Any]]:
    """The profile's "sincnet_quant" section and the fine-tuning setup the notebook records."""
    settings = profile.config("sincnet_quant")
    finetune_hp = dict(settings["finetune"], pruning_rate=settings["pruning_rate"],
                       min_channels=settings["min_channels"])
    return settings, finetune_hp


def calibrate(qmodel: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], batches: int) -> None:
    """The notebook's calibrate: every QuantAct's range from `batches` batches of `loader` (also used by
    bench/bench_sincnet_seeds.py)."""
    qmodel.eval()
    for module in qmodel.modules():
        if isinstance(module, QuantAct):
            module.train()
    with torch.no_grad():
        for i, (inputs, _) in enumerate(loader):
            if i == batches:
                break
            qmodel(inputs)
    qmodel.eval()


def _quantize_and_train(artifacts: str | Path, pruned: SincNet, loaders: dict[str, DataLoader],
                        freeze_weights: bool = False, **changes: Any) -> None:
    """The notebook's PTQ and QAT cells on `pruned`: quantize_sincnet with the reference STEQuantize,
    calibrate, fit with the profile's QAT setup (`changes` to it) into artifacts/sincnet_quant.pt.

    freeze_weights: the conv/linear weights get requires_grad False (no gradient, no update)."""
    settings, _ = _settings()
    qmodel = quantize_sincnet(pruned, ReferenceSTE.apply, reference_weight_scale)
    calibrate(qmodel, loaders["train"], settings["calibration_batches"])
    layers = [m for m in quantized_layers(qmodel) if hasattr(m, "weight")]
    for layer in layers:
        layer.weight.requires_grad_(not freeze_weights)
    fit(qmodel, loaders, dict(settings["qat"], **changes), save_path=Path(artifacts) / checkpoint_file(SINCNET_QUANT),
        progress=False)


def _load_pruned(artifacts: str | Path) -> SincNet:
    """The fine-tuned pruned model of the submission (the QAT's starting point)."""
    return load_model(Path(artifacts) / checkpoint_file(SINCNET_PRUNED), SincNet)[0]


# --- test_float

def _float_saved_with_channels_zeroed(reference: Path, dest: Path) -> None:
    """An experiment cell after pruning saved zero_pruned_channels(model, cfg_mask) (the float model with the
    pruned channels silenced) to artifacts/sincnet_float.pt, over the trained float model (meta kept)."""
    artifacts = start_from(reference, dest)
    settings, _ = _settings()
    path = artifacts / checkpoint_file(SINCNET_FLOAT)
    model, meta = load_model(path, SincNet)
    cfg, cfg_mask = reference_build_cfg_mask(model, settings["pruning_rate"], settings["min_channels"])
    silenced = zero_pruned_channels(model, cfg_mask)
    if reference_build_cfg_mask(silenced, settings["pruning_rate"], settings["min_channels"])[0] != cfg:
        raise MutantBuildError("the float model with its pruned channels zeroed prunes to another cfg: the "
                               "pruned model would not be the one of this float checkpoint")
    save_checkpoint(path, silenced, meta=meta)


def _float_history_from_finetuning(reference: Path, dest: Path) -> None:
    """sincnet_float.json is the fine-tuning run's history (sincnet_pruned.json copied over it)."""
    artifacts = start_from(reference, dest)
    copy_run(artifacts, SINCNET_PRUNED, SINCNET_FLOAT, files=(history_file,))


# --- test_pruned (the pasted build_cfg_mask cell)

def _pruned_with(*edits: Edit) -> Callable[[Path, Path], None]:
    """make(): the notebook ran its build_cfg_mask cell with `edits` made; the float model pruned with it, then
    fine-tuned and quantization-aware trained as the notebook's cells do."""
    wrong_code = patched("sincnet_quant", "sincnet_quant", "build_cfg_mask", *edits)

    def make(reference: Path, dest: Path) -> None:
        artifacts = start_from(reference, dest)
        plant_code(dest, "sincnet_quant", "build_cfg_mask", wrong_code)
        build_cfg_mask = define("sincnet_quant", "sincnet_quant", "build_cfg_mask", wrong_code)["build_cfg_mask"]
        settings, finetune_hp = _settings()
        model, _ = load_model(artifacts / checkpoint_file(SINCNET_FLOAT), SincNet)
        cfg, cfg_mask = build_cfg_mask(model, settings["pruning_rate"], settings["min_channels"])
        if cfg == reference_build_cfg_mask(model, settings["pruning_rate"], settings["min_channels"])[0]:
            raise MutantBuildError(f"this build_cfg_mask gives the reference cfg {cfg} on the float model")
        check_cfg_mask(model, cfg, cfg_mask)
        pruned = prune_sincnet(model, cfg, cfg_mask)
        loaders = speech.loaders()
        fit(pruned, loaders, finetune_hp, save_path=artifacts / checkpoint_file(SINCNET_PRUNED), progress=False)
        _quantize_and_train(artifacts, pruned, loaders)
    return make


# --- test_qat

def _qat_latent_weights_overwritten(reference: Path, dest: Path) -> None:
    """After QAT, a cell 'stored the 2-bit model': it wrote each quantized layer's effective_weight() into its
    weight (.data) and saved the model again as artifacts/sincnet_quant.pt (meta kept)."""
    artifacts = start_from(reference, dest)
    path = artifacts / checkpoint_file(SINCNET_QUANT)
    qmodel, meta = load_model(path, QuantSincNet, quantizer=ReferenceSTE.apply, weight_scale=reference_weight_scale)
    with torch.no_grad():
        for layer in quantized_layers(qmodel):
            if hasattr(layer, "weight"):
                layer.weight.data = layer.effective_weight().detach().clone()
    save_checkpoint(path, qmodel, meta=meta)


def _qat_with_frozen_weights(reference: Path, dest: Path) -> None:
    """QAT with the conv/linear weights frozen (requires_grad False, as for a distillation teacher): only
    BN, the sinc band edges and the classifier bias trained."""
    artifacts = start_from(reference, dest)
    _quantize_and_train(artifacts, _load_pruned(artifacts), speech.loaders(), freeze_weights=True)


ARTIFACT_MUTANTS = [
    ArtifactMutant("float checkpoint overwritten by the float model with the pruned channels zeroed",
                   "sincnet_quant", "test_float", _float_saved_with_channels_zeroed),
    ArtifactMutant("float history copied from the fine-tuning run", "sincnet_quant", "test_float",
                   _float_history_from_finetuning),
    ArtifactMutant("pruned with a per-layer threshold in the pasted build_cfg_mask, then fine-tuned and QAT",
                   "sincnet_quant", "test_pruned",
                   _pruned_with(PER_LAYER_THRESHOLD), cell="build_cfg_mask"),
    ArtifactMutant("pruned with >= instead of > in the pasted build_cfg_mask, then fine-tuned and QAT",
                   "sincnet_quant", "test_pruned", _pruned_with(KEEPS_AT_THRESHOLD),
                   cell="build_cfg_mask"),
    ArtifactMutant("latent weights overwritten with their quantized values after QAT, saved again",
                   "sincnet_quant", "test_qat", _qat_latent_weights_overwritten),
    ArtifactMutant("QAT with the conv/linear weights frozen", "sincnet_quant", "test_qat",
                   _qat_with_frozen_weights),
]
