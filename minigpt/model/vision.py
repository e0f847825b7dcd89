"""Seeing for the one `Transformer`: a small image encoder (ViT or CNN), a projector into the LM's width,
and the splice that puts the projected patches where a chat has `<|image|>` placeholders.

LLaVA (Liu et al. 2023, "Visual Instruction Tuning", §4.1) in three lines:

    Z_v = g(X_v)          the encoder's N patch features of an image, (N, d_v)
    H_v = W(Z_v)          the projector maps them into the word-embedding space, (N, C)  [LLaVA-1.5: a 2-layer MLP]
    x_t = H_v[j]          the j-th `<|image|>` placeholder of the prompt reads the j-th projected patch

and the language model runs on the spliced sequence unchanged: the `Transformer` takes `inputs_embeds`
(its own token embeddings with the placeholders overwritten) and has no multimodal branch inside it. The
splice is `minigpt.model.splice.splice_placeholders`, the one path audio (`<|audio|>`, `SplicedLM`) takes too.

The encoders are trained from scratch here (LLaVA freezes a pretrained CLIP ViT; none ships offline):

* ViT (Dosovitskiy et al. 2021, eq. 1-4): non-overlapping P×P patches, linearly embedded, plus learned
  position embeddings, through pre-norm blocks. The blocks ARE the LM's `Block` (same attention, MLP and
  norms, from a `ModelConfig` of the encoder's size); they attend bidirectionally because they get a mask
  that lets every patch see every other patch (`attn_mask` all True), instead of the causal default
  (`minigpt.model.splice.bidirectional_blocks`, shared with the speech encoder).
* CNN: three 3×3 convolutions (the last two with stride 2), then average pooling to a √N×√N grid; each
  cell of the grid is one token.

A model folder of a multimodal run is a normal folder (`model.safetensors` holds the LM, so every text
tool still reads it) plus `vision.safetensors` (encoder + projector) and the `VisionConfig` in
`config.json`'s `extra["vision"]`; `load_vision_language_model` reads it back.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from minigpt.model.folder import load_model_folder, resolve_model_folder, save_model_folder
from minigpt.model.mot import ModalityState, apply_mot, is_mot, load_image_weights, split_mot_state
from minigpt.model.splice import SplicedLM, bidirectional_blocks, run_bidirectional, splice_placeholders
from minigpt.model.transformer import Transformer
from minigpt.model.xattn import GatedCrossAttention, MediaState, attach_xattn, media_for_rows
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import IMAGE_TOKEN
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write

VISION_WEIGHTS = "vision.safetensors"
EncoderKind = Literal["vit", "cnn"]
Fusion = Literal["prefix", "xattn"]


@dataclass
class VisionConfig:
    """The image encoder and projector (`vision.encoders.<name>` in conf/vision/default.yaml).

    Images are `channels`×`image_size`×`image_size` floats in [0, 1]; each becomes `num_tokens` tokens.
    ViT: patches of `patch_size` (so `num_tokens` = (image_size / patch_size)²), `n_layer` blocks of width
    `n_embd` with `n_head` heads. CNN: `n_embd` output channels pooled to a √num_tokens grid.
    The projector is Linear(n_embd → hidden) · GELU · Linear(hidden → LM width), hidden = `projector_hidden`
    or the LM's width. `mot` unties the LM's norms, MLPs and attention projections by modality
    (`minigpt.model.mot`). `fusion`: `prefix` puts the N vectors at N placeholders (LLaVA); `xattn` keeps
    one tag token per image and adds gated cross-attention layers before the LM's blocks (Flamingo,
    `minigpt.model.xattn`).
    """

    kind: EncoderKind = "vit"
    image_size: int = 24
    channels: int = 3
    num_tokens: int = 16
    patch_size: int = 6
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    projector_hidden: int | None = None
    mot: bool = False
    fusion: Fusion = "prefix"

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "num_tokens", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"vision.{name}={value!r} must be a positive integer.")
        if self.fusion not in ("prefix", "xattn"):
            raise ConfigError(f"vision.fusion={self.fusion!r} is unknown; use 'prefix' (LLaVA) or 'xattn' (Flamingo).")
        if self.fusion == "xattn" and self.mot:
            raise ConfigError("vision.mot=true routes image tokens of the sequence; vision.fusion=xattn has none.")
        if self.kind not in ("vit", "cnn"):
            raise ConfigError(f"vision kind={self.kind!r} is unknown; use 'vit' or 'cnn'.")
        grid = math.isqrt(self.num_tokens)
        if grid * grid != self.num_tokens:
            raise ConfigError(f"vision.num_tokens={self.num_tokens} must be a square (a grid of patches), e.g. 16.")
        if self.kind == "vit" and self.image_size != grid * self.patch_size:
            raise ConfigError(
                f"vision: image_size={self.image_size} with patch_size={self.patch_size} gives "
                f"{(self.image_size // self.patch_size) ** 2} patches, not num_tokens={self.num_tokens}; "
                f"set patch_size={self.image_size // grid} or num_tokens={(self.image_size // self.patch_size) ** 2}."
            )

    @property
    def placeholders(self) -> int:
        """`<|image|>` tokens per image in the text: the N patches (prefix), or one tag (xattn)."""
        return self.num_tokens if self.fusion == "prefix" else 1

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, stored in `config.json`'s `extra["vision"]`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisionConfig:
        """Build from a dict, naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(data) - known):
            raise ConfigError(f"Unknown vision encoder keys {unknown}; known keys are {sorted(known)}.")
        return cls(**data)


class ViTEncoder(nn.Module):
    """Patch embedding + position embedding + bidirectional `Block`s + final norm: (B, ch, H, W) → (B, N, d)."""

    full_mask: Tensor

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        # A P×P convolution with stride P is exactly "flatten each patch, multiply by E" of ViT eq. 1.
        self.patch = nn.Conv2d(config.channels, config.n_embd, config.patch_size, stride=config.patch_size)
        self.pos = nn.Parameter(0.02 * torch.randn(config.num_tokens, config.n_embd))
        self.blocks, self.norm = bidirectional_blocks(config.n_layer, config.n_head, config.n_embd, config.num_tokens)
        # Every patch may attend every patch: the mask replaces the blocks' causal default.
        self.register_buffer("full_mask", torch.ones(1, 1, config.num_tokens, config.num_tokens, dtype=torch.bool))

    def forward(self, images: Tensor) -> Tensor:
        """(B, ch, H, W) → (B, N, d)."""
        x = self.patch(images).flatten(2).transpose(1, 2) + self.pos  # (B, N, d)
        return run_bidirectional(self.blocks, self.norm, x, self.full_mask)


class CNNEncoder(nn.Module):
    """Three 3×3 convolutions (GELU), average-pooled to a √N×√N grid: (B, ch, H, W) → (B, N, d)."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        width = config.n_embd // 2
        self.net = nn.Sequential(
            nn.Conv2d(config.channels, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(width, config.n_embd, 3, stride=2, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(math.isqrt(config.num_tokens)),
        )
        self.norm = nn.LayerNorm(config.n_embd)

    def forward(self, images: Tensor) -> Tensor:
        """(B, ch, H, W) → (B, N, d)."""
        return self.norm(self.net(images).flatten(2).transpose(1, 2))


class VisionTower(nn.Module):
    """Encoder then projector: images (B, ch, H, W) → (B, N, C) vectors in the LM's embedding space."""

    def __init__(self, config: VisionConfig, lm_width: int) -> None:
        super().__init__()
        self.config = config
        self.encoder: nn.Module = ViTEncoder(config) if config.kind == "vit" else CNNEncoder(config)
        hidden = config.projector_hidden or lm_width
        # LLaVA-1.5 (Liu et al. 2023b, §3.1): a two-layer MLP projector works better than LLaVA's linear one.
        self.projector = nn.Sequential(nn.Linear(config.n_embd, hidden), nn.GELU(), nn.Linear(hidden, lm_width))

    def forward(self, images: Tensor) -> Tensor:
        """(B, ch, H, W) → (B, N, C)."""
        expected = (self.config.channels, self.config.image_size, self.config.image_size)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(f"Images of shape {tuple(images.shape[1:])} given to an encoder built for {expected}.")
        return self.projector(self.encoder(images))


def splice_images(embeds: Tensor, input_ids: Tensor, image_id: int, image_embeds: Tensor) -> Tensor:
    """`embeds` (B, T, C) with its `<|image|>` positions overwritten, in reading order, by the rows of
    `image_embeds` (n_images, N, C) (`splice_placeholders`: a count mismatch is refused)."""
    return splice_placeholders(embeds, input_ids, image_id, image_embeds, IMAGE_TOKEN, "images")


class VisionLanguageModel(SplicedLM):
    """The LM and the vision tower, composed: `forward(input_ids, images)` → the LM's (logits, aux).

    Args:
        lm: the shared `Transformer`; with `tower.config.mot`, its norms, MLPs and attention projections
            are untied by modality (`apply_mot`, in place), routed by the `<|image|>` positions of each call.
        tower: encoder + projector.
        image_id: the id of `<|image|>` in the LM's tokenizer.
    """

    token = IMAGE_TOKEN
    items = "images"

    def __init__(self, lm: Transformer, tower: VisionTower, image_id: int) -> None:
        super().__init__(lm, image_id)
        self.tower, self.image_id = tower, image_id
        self.modality = ModalityState()
        if tower.config.mot and not is_mot(lm):
            apply_mot(lm, self.modality)
        self.media = MediaState()
        self.xattn: nn.ModuleList | None = None
        if tower.config.fusion == "xattn":
            width, heads = lm.config.n_embd, lm.config.n_head
            hidden = tower.config.projector_hidden or width
            self.xattn = nn.ModuleList(GatedCrossAttention(width, heads, hidden) for _ in lm.blocks)
            attach_xattn(lm, self.xattn, self.media)

    @property
    def connector(self) -> list[nn.Module]:
        """What joins the encoder to the LM and trains with the projector: the projector (+ xattn layers)."""
        return [self.tower.projector] + ([self.xattn] if self.xattn is not None else [])

    def encode(self, media: Tensor) -> Tensor:
        """Images (n, ch, H, W) → (n, N, C) through the encoder and projector."""
        return self.tower(media)

    def embed(self, input_ids: Tensor, images: Tensor | None) -> Tensor:
        """The LM's token embeddings (B, T, C) with the projected images at the placeholders (prefix fusion;
        with xattn the tags keep their embeddings and `self.media` gets the images for the call)."""
        if self.xattn is None or images is None or images.shape[0] == 0:
            return super().embed(input_ids, images)
        self.media.media, self.media.visible = media_for_rows(self.tower(images), input_ids, self.image_id)
        return self.lm.tok_emb(input_ids)

    def forward(
        self,
        input_ids: Tensor,
        images: Tensor | None = None,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """Logits (B, T, vocab) and aux of the LM on the spliced embeddings."""
        try:
            embeds = self.embed(input_ids, images)
            self.modality.image_mask = input_ids == self.image_id  # read by the MoT switches, if any
            return self.lm(input_ids, positions=positions, attn_mask=attn_mask, inputs_embeds=embeds)
        finally:
            self.modality.image_mask = self.media.media = self.media.visible = None


def save_vision_language_model(
    folder: str | Path, model: VisionLanguageModel, tokenizer: Tokenizer | None, lm: Transformer | None = None
) -> Path:
    """A normal model folder for the LM, plus `vision.safetensors` and `extra["vision"]` in `config.json`.

    `lm` replaces `model.lm` in the folder (the LoRA-merged copy of it).
    With MoT, `model.safetensors` holds the LM with its text weights (every text tool reads it as a dense
    model) and `vision.safetensors` also holds the image copies, under `mot.<dense key>`.
    """
    lm = model.lm if lm is None else lm
    lm.config.extra["vision"] = model.tower.config.to_dict()
    text, image = split_mot_state(lm.state_dict())
    if image:  # a dense Transformer with the text weights, for the ordinary folder
        lm = Transformer(lm.config)
        lm.load_state_dict(text)
    folder = save_model_folder(folder, lm, tokenizer)
    weights = {**model.tower.state_dict(), **{f"mot.{k}": v for k, v in image.items()}}
    if model.xattn is not None:
        weights |= {f"xattn.{k}": v for k, v in model.xattn.state_dict().items()}
    atomic_write(
        Path(folder) / VISION_WEIGHTS, lambda tmp: save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))
    )
    return folder


def read_vision_weights(folder: Path) -> dict[str, dict[str, Tensor]]:
    """A model folder's `vision.safetensors` by part: {"tower": …, "mot": the MoT image weights keyed as in
    the dense LM, "xattn": the cross-attention layers}, each keyed without its prefix."""
    weights = load_file(str(folder / VISION_WEIGHTS))
    parts: dict[str, dict[str, Tensor]] = {"tower": {}, "mot": {}, "xattn": {}}
    for key, value in weights.items():
        prefix, _, rest = key.partition(".")
        part = prefix if prefix in ("mot", "xattn") else "tower"
        parts[part][rest if part != "tower" else key] = value
    return parts


def load_vision_weights(model: VisionLanguageModel, parts: dict[str, dict[str, Tensor]]) -> None:
    """Load `read_vision_weights`' parts into `model` (tower, MoT image copies, cross-attention layers);
    an empty part (a fresh model) is skipped."""
    if parts["tower"]:
        model.tower.load_state_dict(parts["tower"])
    if parts["mot"] and is_mot(model.lm):
        load_image_weights(model.lm, parts["mot"])
    if parts["xattn"] and model.xattn is not None:
        model.xattn.load_state_dict(parts["xattn"])


def has_vision(path: str | Path) -> bool:
    """Whether the model (or run) folder at `path` holds a vision tower."""
    return (resolve_model_folder(path) / VISION_WEIGHTS).exists()


def load_vision_language_model(
    path: str | Path, map_location: str = "cpu", field: str | None = None
) -> tuple[VisionLanguageModel, Tokenizer]:
    """Read back what `save_vision_language_model` wrote (a folder without a vision tower is refused)."""
    folder = resolve_model_folder(path, field)
    lm, tokenizer = load_model_folder(folder, map_location, field)
    if not (folder / VISION_WEIGHTS).exists() or "vision" not in lm.config.extra or tokenizer is None:
        raise ConfigError(
            f"{field or 'run'}={path} has no vision tower ({VISION_WEIGHTS} and extra.vision in config.json); "
            "pass the model folder of a stage=multimodal run."
        )
    tower = VisionTower(VisionConfig.from_dict(lm.config.extra["vision"]), lm.config.n_embd)
    model = VisionLanguageModel(lm, tower, tokenizer.special_id(IMAGE_TOKEN))
    load_vision_weights(model, read_vision_weights(folder))
    return model.to(torch.device(map_location)), tokenizer
