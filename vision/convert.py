"""Official Vim / VMamba checkpoint layouts <-> mambakit's, with shape checks and a report in words.

Vim (github.com/hustvl/Vim, "bimamba v2" checkpoints, e.g. ``vim_t_midclstok_76p1acc.pth``):

    official                                   mambakit
    pos_embed (1, N+1, D), cls row at N//2     pos_embed (1, N, D) + cls_pos_embed (1, 1, D)
    layers.i.mixer.{conv1d,x_proj,dt_proj,A_log,D}            layers.i.mixer.branches.0.*
    layers.i.mixer.{conv1d_b,x_proj_b,dt_proj_b,A_b_log,D_b}  layers.i.mixer.branches.1.*
    everything else (patch_embed.proj, cls_token, layers.i.norm, in_proj, out_proj, norm_f,
    head) keeps its name.

VMamba (github.com/MzeroMiko/VMamba, first release "v0" layout, e.g. ``vssmtiny``):

    layers.i.blocks.j.ln_1                          stages.i.blocks.j.norm
    layers.i.blocks.j.self_attention.{in_proj,conv2d,out_norm,out_proj}
                                                    stages.i.blocks.j.mixer.{same}
    ...self_attention.x_proj_weight (4, R+2N, E)    ...mixer.branches.k.x_proj.weight (R+2N, E)
    ...self_attention.dt_projs_weight (4, E, R)     ...mixer.branches.k.dt_proj.weight
    ...self_attention.dt_projs_bias (4, E)          ...mixer.branches.k.dt_proj.bias
    ...self_attention.A_logs (4E, N)                ...mixer.branches.k.A_log (E, N)
    ...self_attention.Ds (4E,)                      ...mixer.branches.k.D (E,)
    layers.i.downsample.{reduction,norm}            stages.i.downsample.{reduction,norm}
    patch_embed.{proj,norm}, norm, head             the same

Real-checkpoint verification awaits a local copy of the official files; the tests build state
dicts with the official names and shapes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.nn as nn

from .scan_orders import class_token_index
from .tokenizers import resample_pos_embed

_VIM_BRANCH = {"conv1d.weight": (0, "conv1d.weight"), "conv1d.bias": (0, "conv1d.bias"),
               "x_proj.weight": (0, "x_proj.weight"), "dt_proj.weight": (0, "dt_proj.weight"),
               "dt_proj.bias": (0, "dt_proj.bias"), "A_log": (0, "A_log"), "D": (0, "D"),
               "conv1d_b.weight": (1, "conv1d.weight"), "conv1d_b.bias": (1, "conv1d.bias"),
               "x_proj_b.weight": (1, "x_proj.weight"), "dt_proj_b.weight": (1, "dt_proj.weight"),
               "dt_proj_b.bias": (1, "dt_proj.bias"), "A_b_log": (1, "A_log"), "D_b": (1, "D")}
_VIM_BRANCH_BACK = {v: k for k, v in _VIM_BRANCH.items()}
_VIM_MIXER_RE = re.compile(r"^layers\.(\d+)\.mixer\.(.+)$")
_VIM_OURS_RE = re.compile(r"^layers\.(\d+)\.mixer\.branches\.(\d+)\.(.+)$")

_SS2D_STACKED = {"x_proj_weight": "x_proj.weight", "dt_projs_weight": "dt_proj.weight",
                 "dt_projs_bias": "dt_proj.bias", "A_logs": "A_log", "Ds": "D"}
_SS2D_STACKED_BACK = {v: k for k, v in _SS2D_STACKED.items()}
_VM_BLOCK_RE = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(ln_1|self_attention)\.(.+)$")
_VM_OURS_RE = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.(norm|mixer)\.(.+)$")
_N_DIRECTIONS = 4


@dataclass
class ConversionReport:
    """What a conversion or a load found: keys the model lacks, keys it needs that the
    checkpoint lacks, and shape mismatches. ``str(report)`` says it in words."""

    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)          # (key, checkpoint shape, model shape)
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = []
        if self.missing:
            lines.append(f"{len(self.missing)} key(s) the model needs are missing from the checkpoint: "
                         + ", ".join(self.missing[:12]) + (" ..." if len(self.missing) > 12 else ""))
        if self.unexpected:
            lines.append(f"{len(self.unexpected)} checkpoint key(s) have no place in the model: "
                         + ", ".join(self.unexpected[:12]) + (" ..." if len(self.unexpected) > 12 else ""))
        for key, got, want in self.mismatched[:12]:
            lines.append(f"shape mismatch at {key}: checkpoint {tuple(got)}, model {tuple(want)}")
        lines.extend(self.notes)
        return "\n".join(lines) if lines else "all keys matched with the right shapes"

    def raise_if_bad(self) -> None:
        if not self.ok:
            raise ValueError("checkpoint does not fit the model:\n" + str(self))


def unwrap_state_dict(checkpoint: Mapping) -> dict:
    """Accept ``{'model': sd}``, ``{'state_dict': sd}``, ``{'model_ema': sd}`` or a bare state
    dict; strip a ``module.`` (DDP) prefix."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"checkpoint: expected a dict, got {type(checkpoint).__name__}")
    for key in ("model", "state_dict", "model_ema"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    out = {}
    for k, v in checkpoint.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"checkpoint entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k[7:] if k.startswith("module.") else k] = v
    return out


def check_against(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> ConversionReport:
    """Compare a state dict (our layout) with ``model``'s keys and shapes."""
    expected = model.state_dict()
    report = ConversionReport()
    report.missing = sorted(k for k in expected if k not in state_dict)
    report.unexpected = sorted(k for k in state_dict if k not in expected)
    report.mismatched = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in state_dict.items()
                         if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    return report


# ---- Vim ----------------------------------------------------------------------------------
def is_official_vim(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(_VIM_MIXER_RE.match(k) and not _VIM_OURS_RE.match(k) and k.endswith(("A_log", "A_b_log"))
               for k in state_dict)


def vim_from_official(state_dict: Mapping[str, torch.Tensor], cls_position: str = "middle") -> dict:
    """Official Vim state dict -> ours (see the module doc). ``cls_position`` says where the
    official model put its class token (``"middle"`` for the published checkpoints)."""
    sd = unwrap_state_dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _VIM_MIXER_RE.match(key)
        if m and m.group(2) in _VIM_BRANCH:
            branch, name = _VIM_BRANCH[m.group(2)]
            out[f"layers.{m.group(1)}.mixer.branches.{branch}.{name}"] = value
        elif key == "pos_embed" and "cls_token" in sd and cls_position != "none":
            n_patches = value.shape[1] - 1
            index = class_token_index(n_patches, cls_position)
            out["cls_pos_embed"] = value[:, index:index + 1].clone()
            out["pos_embed"] = torch.cat([value[:, :index], value[:, index + 1:]], 1)
        else:
            out[key] = value
    return out


def vim_to_official(state_dict: Mapping[str, torch.Tensor], cls_position: str = "middle") -> dict:
    """Ours -> the official Vim layout (inverse of ``vim_from_official``)."""
    sd = unwrap_state_dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _VIM_OURS_RE.match(key)
        if m:
            branch, name = int(m.group(2)), m.group(3)
            if (branch, name) not in _VIM_BRANCH_BACK:
                raise ValueError(f"{key}: Vim has two scan directions (branches 0, 1) with "
                                 f"{sorted({n for _, n in _VIM_BRANCH.values()})}")
            out[f"layers.{m.group(1)}.mixer.{_VIM_BRANCH_BACK[(branch, name)]}"] = value
        elif key == "cls_pos_embed":
            continue
        elif key == "pos_embed" and "cls_pos_embed" in sd:
            index = class_token_index(value.shape[1], cls_position)
            out[key] = torch.cat([value[:, :index], sd["cls_pos_embed"], value[:, index:]], 1)
        else:
            out[key] = value
    return out


def vim_prepare_state_dict(checkpoint: Mapping, model: nn.Module, strict: bool = True
                           ) -> tuple[dict, ConversionReport]:
    """Any Vim checkpoint (official or ours) -> our layout fitted to ``model``: the patch position
    embedding resampled to the model's grid, and the head dropped when its class count differs
    (reported). Raises ``ValueError`` with the report when ``strict`` and keys/shapes disagree."""
    sd = unwrap_state_dict(checkpoint)
    official = is_official_vim(sd)
    if official:
        sd = vim_from_official(sd, model.cls_position)
    report = ConversionReport()
    report.notes.append("read the official Vim layout" if official else "read the mambakit layout")
    if "pos_embed" in sd:
        grid = model.patch_embed.grid_size
        if sd["pos_embed"].shape[1] != grid[0] * grid[1]:
            report.notes.append(f"position embedding resampled from {sd['pos_embed'].shape[1]} "
                                f"positions to the {grid[0]}x{grid[1]} grid")
            sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], grid)
    _drop_mismatched_head(sd, model, report)
    checked = check_against(sd, model)
    report.missing, report.unexpected, report.mismatched = checked.missing, checked.unexpected, checked.mismatched
    if strict:
        report.raise_if_bad()
    return sd, report


def _drop_mismatched_head(sd: dict, model: nn.Module, report: ConversionReport) -> None:
    expected = model.state_dict()
    for key in ("head.weight", "head.bias"):
        if key in sd and (key not in expected or expected[key].shape != sd[key].shape):
            report.notes.append(f"{key} {tuple(sd[key].shape)} does not fit the model's head; "
                                "kept the model's fresh head")
            del sd[key]
            if key in expected:
                sd[key] = expected[key]


# ---- VMamba -------------------------------------------------------------------------------
def is_official_vmamba(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(_VM_BLOCK_RE.match(k) for k in state_dict)


def vmamba_from_official(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Official VMamba (v0 layout) -> ours: rename, and split the 4 stacked directions."""
    sd = unwrap_state_dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _VM_BLOCK_RE.match(key)
        if m:
            stage, block, part, name = m.groups()
            prefix = f"stages.{stage}.blocks.{block}"
            if part == "ln_1":
                out[f"{prefix}.norm.{name}"] = value
            elif name in _SS2D_STACKED:
                parts = _split_directions(key, value)
                for k, piece in enumerate(parts):
                    out[f"{prefix}.mixer.branches.{k}.{_SS2D_STACKED[name]}"] = piece
            else:
                out[f"{prefix}.mixer.{name}"] = value
        elif key.startswith("layers."):
            out["stages." + key[len("layers."):]] = value
        else:
            out[key] = value
    return out


def _split_directions(key: str, value: torch.Tensor) -> list[torch.Tensor]:
    if key.endswith(("A_logs", "Ds")):                     # (4E, N) / (4E,): direction-major
        if value.shape[0] % _N_DIRECTIONS:
            raise ValueError(f"{key}: first dimension {value.shape[0]} is not a multiple of 4 directions")
        return [p.clone() for p in value.chunk(_N_DIRECTIONS, dim=0)]
    if value.shape[0] != _N_DIRECTIONS:
        raise ValueError(f"{key}: expected 4 stacked directions first, got shape {tuple(value.shape)}")
    return [p.clone() for p in value.unbind(0)]


def vmamba_to_official(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Ours -> the official VMamba v0 layout (inverse of ``vmamba_from_official``)."""
    sd = unwrap_state_dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    stacked: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    for key, value in sd.items():
        m = _VM_OURS_RE.match(key)
        if m:
            stage, block, part, name = m.groups()
            prefix = f"layers.{stage}.blocks.{block}"
            if part == "norm":
                out[f"{prefix}.ln_1.{name}"] = value
                continue
            b = re.match(r"^branches\.(\d+)\.(.+)$", name)
            if b:
                if b.group(2) not in _SS2D_STACKED_BACK:
                    raise ValueError(f"{key}: SS2D branches hold {sorted(_SS2D_STACKED_BACK)}")
                stacked.setdefault((prefix, _SS2D_STACKED_BACK[b.group(2)]), {})[int(b.group(1))] = value
            else:
                out[f"{prefix}.self_attention.{name}"] = value
        elif key.startswith("stages."):
            out["layers." + key[len("stages."):]] = value
        else:
            out[key] = value
    for (prefix, name), pieces in stacked.items():
        if sorted(pieces) != list(range(_N_DIRECTIONS)):
            raise ValueError(f"{prefix}: expected SS2D branches 0..3, got {sorted(pieces)}")
        ordered = [pieces[k] for k in range(_N_DIRECTIONS)]
        joined = torch.cat(ordered, 0) if name in ("A_logs", "Ds") else torch.stack(ordered, 0)
        out[f"{prefix}.self_attention.{name}"] = joined
    return out


def vmamba_prepare_state_dict(checkpoint: Mapping, model: nn.Module, strict: bool = True
                              ) -> tuple[dict, ConversionReport]:
    """Any VMamba checkpoint (official v0 or ours) -> our layout checked against ``model``."""
    sd = unwrap_state_dict(checkpoint)
    official = is_official_vmamba(sd)
    if official:
        sd = vmamba_from_official(sd)
    report = ConversionReport(notes=["read the official VMamba v0 layout" if official
                                     else "read the mambakit layout"])
    _drop_mismatched_head(sd, model, report)
    checked = check_against(sd, model)
    report.missing, report.unexpected, report.mismatched = checked.missing, checked.unexpected, checked.mismatched
    if strict:
        report.raise_if_bad()
    return sd, report


def load_official(model: nn.Module, checkpoint: Mapping, strict: bool = True) -> ConversionReport:
    """Convert (if needed) and load an official Vim or VMamba checkpoint into ``model``."""
    from .vim import Vim
    from .vmamba import VMamba

    if isinstance(model, Vim):
        sd, report = vim_prepare_state_dict(checkpoint, model, strict)
    elif isinstance(model, VMamba):
        sd, report = vmamba_prepare_state_dict(checkpoint, model, strict)
    else:
        raise TypeError(f"load_official: expected a Vim or VMamba model, got {type(model).__name__}")
    model.load_state_dict(sd, strict=strict)
    return report
