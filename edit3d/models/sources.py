"""Pinned real sources of every network the project uses (see docs/models.md).

The one declaration of each source: family modules import these constants for their
`ModelSpec`s, so a revision, checksum or pattern changes in one place. Hub revisions are
full commit ids; release files carry their SHA-256 and exact size, each cross-checked
against several independent published records, and are stored under the publisher's file
name (the URL's last component).
"""

from __future__ import annotations

from edit3d.models.registry import HubSource, UrlSource, locate_source

# Framework-specific duplicates of the same weights that the torch stack never reads.
_NON_TORCH_WEIGHTS = ("*.h5", "*.msgpack", "*.ot", "*.onnx", "*.tflite", "*.pb")

# --- InstructPix2Pix (paper Sec. 3.1) -----------------------------------------------------

INSTRUCT_PIX2PIX = HubSource(
    repo_id="timbrooks/instruct-pix2pix",
    revision="31519b5cb02a7fd89b906d88731cd4d6a7bbf88d",
    # The diffusers folders only: the repository also holds two 7 GB single-file
    # checkpoints (instruct-pix2pix-00-22000.ckpt/.safetensors) for other tools.
    allow_patterns=(
        "model_index.json",
        "scheduler/*",
        "text_encoder/*",
        "tokenizer/*",
        "unet/*",
        "vae/*",
    ),
    # The loaders read the default (fp32) files and cast; the .fp16 variants would double
    # the download.
    ignore_patterns=("*.ckpt", "*.fp16.*", *_NON_TORCH_WEIGHTS),
    license="MIT (model card); fine-tuned from Stable Diffusion 1.5 (CreativeML OpenRAIL-M)",
    size_bytes=4_300_000_000,
    required_files=(
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/*model*",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "unet/config.json",
        "unet/diffusion_pytorch_model*",
        "vae/config.json",
        "vae/diffusion_pytorch_model*",
    ),
)

# What the transformers loaders read from a BLIP or CLIP repository folder.
_BLIP_FILES = ("config.json", "preprocessor_config.json", "tokenizer_config.json", "*model*")
_CLIP_FILES = ("config.json", "vocab.json", "merges.txt", "*model*")
# The PyTorch weights and tokenizer/config files of a CLIP repository (not its TF/Flax copies).
_CLIP_DOWNLOAD = ("*.json", "*.txt", "*.safetensors")

# --- BLIP large (ADSS, paper Sec. 3.2) ----------------------------------------------------

BLIP_CAPTION_LARGE = HubSource(
    repo_id="Salesforce/blip-image-captioning-large",
    revision="2227ac38c9f16105cb0412e7cab4759978a8fd90",
    ignore_patterns=_NON_TORCH_WEIGHTS,
    license="BSD-3-Clause",
    size_bytes=1_880_000_000,
    required_files=_BLIP_FILES,
)

BLIP_ITM_LARGE_COCO = HubSource(
    repo_id="Salesforce/blip-itm-large-coco",
    revision="fef05cafc05298067cbbca00b125749394a77a6f",
    ignore_patterns=_NON_TORCH_WEIGHTS,
    license="BSD-3-Clause",
    size_bytes=1_790_000_000,
    required_files=_BLIP_FILES,
)

# --- Segment Anything (ADSS, paper Sec. 3.2) ----------------------------------------------
# The hex in SAM's file names is a prefix of the file's MD5, not of its SHA-256.

SAM_VIT_H = UrlSource(
    url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    size_bytes=2_564_550_879,
    license="Apache-2.0",
)

SAM_VIT_B = UrlSource(
    url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    size_bytes=375_042_383,
    license="Apache-2.0",
)

# --- Super-resolution refine (paper Sec. 3.3) ---------------------------------------------

REALESRGAN_X4PLUS = UrlSource(
    url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
    sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
    size_bytes=67_040_989,
    license="BSD-3-Clause",
)

GFPGAN_V14 = UrlSource(
    url="https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
    sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
    size_bytes=348_632_874,
    license="Apache-2.0 (code; the publisher states no separate weight licence)",
)

# facexlib's RetinaFace detector and ParseNet face parser, which GFPGAN's face pipeline uses
# to find, align and paste back faces.
FACEXLIB_DETECTION_RESNET50 = UrlSource(
    url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
    sha256="6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
    size_bytes=109_497_761,
    license="MIT",
)

FACEXLIB_PARSING_PARSENET = UrlSource(
    url="https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth",
    sha256="3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2",
    size_bytes=85_331_193,
    license="MIT",
)

# OpenCV Zoo's YuNet: face boxes with five landmarks, run by OpenCV's own FaceDetectorYN
# (no extra package); the file is a Git LFS object pinned at an opencv_zoo commit, its
# SHA-256 the LFS object id.
YUNET_FACE_2023MAR = UrlSource(
    url="https://media.githubusercontent.com/media/opencv/opencv_zoo/"
    "47534e27c9851bb1128ccc0102f1145e27f23f98/models/face_detection_yunet/"
    "face_detection_yunet_2023mar.onnx",
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    size_bytes=232_589,
    license="MIT",
)

# --- CLIP for the directional metric (paper Sec. 4.3) -------------------------------------

CLIP_VIT_L14 = HubSource(
    repo_id="openai/clip-vit-large-patch14",
    revision="32bd64288804d66eefd0ccbe215aa642df71cc41",
    allow_patterns=_CLIP_DOWNLOAD,
    license="MIT",
    size_bytes=1_710_000_000,
    required_files=_CLIP_FILES,
)

CLIP_VIT_B32 = HubSource(
    repo_id="openai/clip-vit-base-patch32",
    revision="3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268",
    allow_patterns=_CLIP_DOWNLOAD,
    license="MIT",
    size_bytes=605_000_000,
    required_files=_CLIP_FILES,
)

# --- LPIPS for the turn's perceptual loss (IN2N's `in2n` objective) ------------------------

# torchvision's ImageNet AlexNet, the backbone of LPIPS "alex" (what torchmetrics' LPIPS
# downloads through torch.hub). torchvision publishes only the first 8 hex digits of the
# file's SHA-256, in its name; torch.hub checks the same prefix. LPIPS's linear layers are
# not downloaded: torchmetrics ships them (`edit3d.models.lpips` checks their SHA-256).
ALEXNET_IMAGENET = UrlSource(
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    sha256="7be5be79",
    license="BSD-3-Clause (torchvision)",
)

ALL_SOURCES: dict[str, HubSource | UrlSource] = {
    "instruct-pix2pix": INSTRUCT_PIX2PIX,
    "blip-caption-large": BLIP_CAPTION_LARGE,
    "blip-itm-large-coco": BLIP_ITM_LARGE_COCO,
    "sam-vit-h": SAM_VIT_H,
    "sam-vit-b": SAM_VIT_B,
    "realesrgan-x4plus": REALESRGAN_X4PLUS,
    "gfpgan-v1.4": GFPGAN_V14,
    "yunet-face": YUNET_FACE_2023MAR,
    "facexlib-detection-resnet50": FACEXLIB_DETECTION_RESNET50,
    "facexlib-parsing-parsenet": FACEXLIB_PARSING_PARSENET,
    "clip-vit-l14": CLIP_VIT_L14,
    "clip-vit-b32": CLIP_VIT_B32,
    "lpips-alex": ALEXNET_IMAGENET,
}
"""The source each registered name is expected to use, by the names in the shared contract."""


def weights_presence() -> dict[str, bool]:
    """Per pinned name: whether its real weights are where `load_model` would look (cheap:
    file checks only, no family module or network)."""
    return {name: locate_source(name, source).present for name, source in ALL_SOURCES.items()}
