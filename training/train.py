"""Train the chest radiograph triage CNN and export model.onnx + model.json.

Usage (CPU or CUDA, whichever is there):
    python -m training.train --data ../shared/data --out src/qoima/ai/models/cxr_triage
    python -m training.train --pack training/cache/pack --out /tmp/model   # images packed for a GPU
CPU-only machines: add e.g. --epochs 4 --width 0.5 to finish in reasonable time.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageFilter
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from qoima.ai.metrics import roc_auc, threshold_for_sensitivity
from qoima.ai.preprocess import Preprocessing, center_crop, standardize
from training.export import export_model
from training.images import load_from_data, load_pack
from training.network import TriageNet
from training.sources import Record, SourceConfig, label_targets, load_config, read_split

logger = logging.getLogger("training.train")
TARGET_SENSITIVITY = 0.90


class AugmentedImages(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Train-time augmentation on the cached equalised 256 px images, ending in the model scale.

    Geometry: rotation, scale, translation around the centre, then the central crop. Intensity:
    gamma, contrast, brightness, blur, noise, JPEG re-encoding, a random erased patch. These
    make film style, markers and borders less useful than lung content.
    """

    def __init__(
        self,
        images: npt.NDArray[np.uint8],
        targets: npt.NDArray[np.float32],
        mask: npt.NDArray[np.float32],
        preprocessing: Preprocessing,
        augment: bool,
    ) -> None:
        self.images = images
        self.targets = torch.from_numpy(targets)
        self.mask = torch.from_numpy(mask)
        self.preprocessing = preprocessing
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.augment:
            image = self._augment(image)
        else:
            image = center_crop(image, self.preprocessing.crop_px)
        tensor = torch.from_numpy(standardize(np.ascontiguousarray(image), self.preprocessing))
        return tensor[None], self.targets[index], self.mask[index]

    def _augment(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        rng = random.Random()
        crop = self.preprocessing.crop_px
        size = image.shape[0]
        angle = math.radians(rng.uniform(-10, 10))
        scale = rng.uniform(0.85, 1.15)
        shift_x = rng.uniform(-0.05, 0.05) * size
        shift_y = rng.uniform(-0.05, 0.05) * size
        # Inverse affine map from output pixel (x, y) to input pixel, about the centres.
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        out_centre = crop / 2.0
        in_centre_x = size / 2.0 + shift_x
        in_centre_y = size / 2.0 + shift_y
        coefficients = (
            cos,
            -sin,
            in_centre_x - cos * out_centre + sin * out_centre,
            sin,
            cos,
            in_centre_y - sin * out_centre - cos * out_centre,
        )
        picture = Image.fromarray(image).transform(
            (crop, crop),
            Image.Transform.AFFINE,
            coefficients,
            Image.Resampling.BILINEAR,
            fillcolor=0,
        )
        if rng.random() < 0.3:
            picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
        if rng.random() < 0.3:
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=rng.randint(25, 90))
            buffer.seek(0)
            picture = Image.open(buffer).convert("L")
        unit = np.asarray(picture, dtype=np.float32) / 255.0
        unit = unit ** rng.uniform(0.7, 1.4)
        unit = unit * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
        if rng.random() < 0.3:
            unit = unit + np.random.default_rng().normal(0, rng.uniform(0.01, 0.05), unit.shape)
        if rng.random() < 0.25:
            patch = rng.randint(crop // 10, crop // 4)
            top, left = rng.randint(0, crop - patch), rng.randint(0, crop - patch)
            unit[top : top + patch, left : left + patch] = rng.random()
        return np.round(np.clip(unit, 0, 1) * 255).astype(np.uint8)


def balanced_weights(records: list[Record]) -> torch.Tensor:
    """Equal sampling weight per (source, label) cell, so small cells such as the Pakistani
    normals (the only same-hospital negatives for TB) are seen as often as big ones."""
    counts = Counter((r.source, r.label) for r in records)
    return torch.tensor([1.0 / counts[(r.source, r.label)] for r in records], dtype=torch.double)


def progress(step: int, total_steps: int, train_started: float, budget_s: float) -> float:
    """Fraction of training done: by steps, or by wall time when a time budget is given, so a
    run cut short by its budget still ends with a fully annealed learning rate."""
    by_steps = step / max(total_steps, 1)
    if budget_s <= 0:
        return by_steps
    return max(by_steps, (time.monotonic() - train_started) / budget_s)


def learning_rate_factor(fraction: float, warmup: float = 0.05) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak."""
    if fraction < warmup:
        return 0.1 + 0.9 * fraction / warmup
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, (fraction - warmup) / (1 - warmup))))
    return 0.01 + 0.99 * cosine


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    losses = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (losses * mask).sum() / mask.sum().clamp(min=1.0)


@torch.no_grad()
def predict(net: nn.Module, loader: DataLoader[Any], device: torch.device) -> np.ndarray:
    net.eval()
    outputs = []
    for images, _, _ in loader:
        images = images.to(device, non_blocking=True).to(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = net(images)
        outputs.append(torch.sigmoid(logits.float()).cpu().numpy())
    return np.concatenate(outputs)


def evaluation_rows(records: list[Record], config: SourceConfig, output: str) -> np.ndarray:
    """Indices of adult images that are labelled for an output: its positives and all normals."""
    _, mask = label_targets(records, config)
    column = config.outputs.index(output)
    adult = np.array([r.population == "adult" for r in records])
    return np.flatnonzero(adult & (mask[:, column] > 0))


def validation_aucs(
    scores: np.ndarray, records: list[Record], config: SourceConfig
) -> dict[str, float]:
    targets, _ = label_targets(records, config)
    result = {}
    for column, output in enumerate(config.outputs):
        rows = evaluation_rows(records, config, output)
        result[output] = roc_auc(scores[rows, column], targets[rows, column])
    return result


def thresholds_for(
    scores: np.ndarray, records: list[Record], config: SourceConfig
) -> dict[str, float]:
    targets, _ = label_targets(records, config)
    result = {}
    for column, output in enumerate(config.outputs):
        rows = evaluation_rows(records, config, output)
        result[output] = threshold_for_sensitivity(
            scores[rows, column], targets[rows, column], TARGET_SENSITIVITY
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="folder holding the sources' folders")
    parser.add_argument("--pack", type=Path, help="training/cache pack made by training.pack")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=-1)
    parser.add_argument(
        "--time-budget-s",
        type=float,
        default=0.0,
        help="stop starting epochs after this many seconds (0: no limit)",
    )
    parser.add_argument("--max-steps", type=int, default=0, help="steps per epoch (smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", default="1.0.0")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)

    config = load_config()
    preprocessing = Preprocessing()
    if args.pack is not None:
        records, images = load_pack(args.pack, preprocessing)
    elif args.data is not None:
        records = [r for r in read_split() if r.split in ("train", "val")]
        images = load_from_data(records, args.data, preprocessing)
    else:
        parser.error("give --data or --pack")
    logger.info("loaded %d images in %.0f s", len(records), time.monotonic() - started)
    targets, mask = label_targets(records, config)
    train_rows = [i for i, r in enumerate(records) if r.split == "train"]
    val_rows = [i for i, r in enumerate(records) if r.split == "val"]
    train_records = [records[i] for i in train_rows]
    val_records = [records[i] for i in val_rows]

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    workers = args.workers if args.workers >= 0 else min(12, max(1, (torch.get_num_threads())))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_set = AugmentedImages(
        images[train_rows], targets[train_rows], mask[train_rows], preprocessing, augment=True
    )
    val_set = AugmentedImages(
        images[val_rows], targets[val_rows], mask[val_rows], preprocessing, augment=False
    )
    sampler = WeightedRandomSampler(balanced_weights(train_records), len(train_rows))
    loader_options: dict[str, Any] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        loader_options["persistent_workers"] = True
    train_loader = DataLoader(
        train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True, **loader_options
    )
    val_loader = DataLoader(val_set, batch_size=256, **loader_options)

    net = TriageNet(len(config.outputs), width=args.width).to(device)
    net = net.to(memory_format=torch.channels_last)
    steps_per_epoch = len(train_loader) if args.max_steps <= 0 else args.max_steps
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    total_steps = args.epochs * steps_per_epoch
    train_started = time.monotonic()
    train_budget_s = args.time_budget_s - (train_started - started) if args.time_budget_s else 0.0
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "train_log.jsonl"
    log_path.write_text("")
    best_score, best_state, best_epoch, step = -1.0, None, -1, 0
    epoch_times: list[float] = []
    for epoch in range(args.epochs):
        epoch_start = time.monotonic()
        if progress(step, total_steps, train_started, train_budget_s) >= 1.0:
            logger.info("step or time budget reached after %d epochs", epoch)
            break
        net.train()
        total_loss, steps = 0.0, 0
        for images_batch, targets_batch, mask_batch in train_loader:
            images_batch = images_batch.to(device, non_blocking=True).to(
                memory_format=torch.channels_last
            )
            targets_batch = targets_batch.to(device, non_blocking=True)
            mask_batch = mask_batch.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = net(images_batch)
            loss = masked_bce(logits.float(), targets_batch, mask_batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"] = args.lr * learning_rate_factor(
                    progress(step, total_steps, train_started, train_budget_s)
                )
            optimizer.step()
            total_loss += loss.item()
            steps += 1
            step += 1
            if steps >= steps_per_epoch or (
                progress(step, total_steps, train_started, train_budget_s) >= 1.0
            ):
                break
        val_scores = predict(net, val_loader, device)
        aucs = validation_aucs(val_scores, val_records, config)
        score = float(np.mean(list(aucs.values())))
        epoch_times.append(time.monotonic() - epoch_start)
        entry = {
            "epoch": epoch,
            "loss": total_loss / max(steps, 1),
            "val_auc": aucs,
            "val_mean_auc": score,
            "epoch_s": epoch_times[-1],
            "lr": optimizer.param_groups[0]["lr"],
        }
        with log_path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        logger.info(
            "epoch %d loss %.4f val %s (%.0f s)",
            epoch,
            entry["loss"],
            {k: round(v, 4) for k, v in aucs.items()},
            epoch_times[-1],
        )
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}

    assert best_state is not None
    net.load_state_dict(best_state)
    val_scores = predict(net, val_loader, device)
    thresholds = thresholds_for(val_scores, val_records, config)
    training_info = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "epochs_run": len(epoch_times),
        "best_epoch": best_epoch,
        "best_val_mean_auc": best_score,
        "wall_s": round(time.monotonic() - started, 1),
        "train_images": len(train_rows),
        "val_images": len(val_rows),
        "arguments": {k: str(v) for k, v in vars(args).items()},
    }
    net_cpu = net.to("cpu").to(memory_format=torch.contiguous_format).float()
    torch.save(
        {
            "state_dict": net_cpu.state_dict(),
            "width": args.width,
            "outputs": config.outputs,
            "thresholds": thresholds,
            "preprocessing": preprocessing.to_json(),
            "training": training_info,
        },
        args.out / "checkpoint.pt",
    )
    export_model(net_cpu, config, preprocessing, thresholds, training_info, args.out, args.version)
    logger.info(
        "done: best epoch %d, val mean AUC %.4f, thresholds %s", best_epoch, best_score, thresholds
    )


if __name__ == "__main__":
    main()
