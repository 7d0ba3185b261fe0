"""Draws docs/images/overview.png: the sample scene, its ground-truth part masks, a nerfacto
base trained on it (CPU, tiny preset), and the point cloud exported from that base in the
dataset's world frame next to the dataset cameras. No editing network is involved, so
nothing in the picture is a tiny model's output.

    .venv/bin/python scripts/make_readme_figure.py [--steps 600]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from edit3d.export.pointcloud import PointCloudConfig, export_point_cloud
from edit3d.export.sampling import CropBox
from edit3d.field import RadianceField, field_from_dataset, get_preset
from edit3d.scene.sample import make_sample_scene
from edit3d.training import fit

PARTS = ("person_hair", "person_head", "person_torso", "person_legs")


def train_base(scene_root: Path, steps: int) -> RadianceField:
    torch.manual_seed(0)
    field = field_from_dataset(scene_root, get_preset("tiny"))
    fit(field, field.make_targets(field.dataset_images()), steps, lr=field.config.base_lr)
    return field


def objects_box(scene) -> CropBox:
    """The ground plate and what stands on it (the field also learns the sky as far shells)."""
    centres = np.stack([view.position for view in scene.views])
    middle = np.array([*centres[:, :2].mean(axis=0), 0.0])
    low, high = middle - np.array([2.0, 2.0, 0.3]), middle + np.array([2.0, 2.0, 2.2])
    return CropBox(tuple(low), tuple(high))


def part_overlay(scene, name: str) -> np.ndarray:
    colours = np.array([[0.9, 0.2, 0.2], [0.2, 0.8, 0.3], [0.2, 0.4, 0.9], [0.9, 0.8, 0.2]])
    image = scene.image(name) * 0.35
    for colour, part in zip(colours, PARTS, strict=True):
        image[scene.object_mask(part, name)] = colour
    return image


def draw(scene, field: RadianceField, steps: int, out: Path) -> None:
    names = [scene.views[i].name for i in (0, len(scene.views) // 3)]
    cloud = export_point_cloud(field, PointCloudConfig(num_points=30_000),
                               crop=objects_box(scene))
    figure = plt.figure(figsize=(13, 8), dpi=110)
    grid = figure.add_gridspec(2, 6, height_ratios=(1.0, 2.2))
    for column, name in enumerate(names):
        render = field.render(scene.views[[v.name for v in scene.views].index(name)]).rgb
        panels = ((scene.image(name), "dataset image"), (part_overlay(scene, name),
                  "ground-truth parts: hair, head, shirt, trousers"),
                  (render, f"nerfacto base, {steps} CPU iterations"))
        for row, (image, title) in enumerate(panels):
            axis = figure.add_subplot(grid[0, column * 3 + row])
            axis.imshow(np.clip(image, 0, 1), interpolation="nearest")
            axis.set_title(title, fontsize=7)
            axis.axis("off")
    axis = figure.add_subplot(grid[1, :], projection="3d")
    axis.scatter(*cloud.points.T, c=np.clip(cloud.colors, 0, 1), s=0.6, depthshade=False)
    centres = np.stack([view.position for view in scene.views])
    axis.scatter(*centres.T, c="black", s=6, marker="^", label="dataset cameras")
    axis.set_title("exported point cloud, cropped to the ground plate, in the dataset's world "
                   "frame (metres, Z up)", fontsize=8)
    axis.legend(fontsize=7, loc="upper left")
    axis.view_init(elev=28, azim=-60)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path("docs/images/overview.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_sample_scene(Path(tmp) / "scene", num_views=36, resolution=64)
        field = train_base(scene.root, args.steps)
        draw(scene, field, args.steps, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
