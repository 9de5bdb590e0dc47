"""The images, as stored: float (N, C, H, W) in [0, 1]; digits (N, 1, 8, 8), CIFAR (N, 3, 32, 32).

The models turn grey images into RGB in a fixed first layer (models.FixedInput), so that an attack
perturbs these native pixels.
"""

from dataclasses import dataclass
from functools import lru_cache

import torch

DATASETS = ("digits", "cifar10", "cifar100")


@dataclass(frozen=True)
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).div_(16).unsqueeze(1)  # pixels are 0..16
    return images, torch.tensor(digits.target)


@lru_cache(maxsize=1)
def read_cifar(name: str, data_dir: str, download: bool) -> Data:
    """torchvision's CIFAR train and test splits, as they are on disk."""
    import torchvision

    dataset_class = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    try:
        train, test = (dataset_class(data_dir, train=t, download=download) for t in (True, False))
    except RuntimeError as error:
        raise SystemExit(f"{name} is not in {data_dir!r} ({error}); pass --download to fetch it there") from None

    def tensors(split):  # uint8 (N, 32, 32, 3) images and a list of labels
        return torch.from_numpy(split.data).permute(0, 3, 1, 2).float().div_(255), torch.tensor(split.targets)

    (x_train, y_train), (x_test, y_test) = tensors(train), tensors(test)
    return Data(x_train, y_train, x_test, y_test, len(train.classes))


def load(dataset: str, seed: int, data_dir: str = "data", download: bool = False, limit: int | None = None) -> Data:
    """The train and test images of one seed.

    Digits have no official split: each seed draws its own stratified 75/25 split (1347 training and
    450 test images), so that seeds sample the data as well as the initial weights. CIFAR keeps
    torchvision's train and test splits for every seed. limit keeps the first N of each.
    """
    if dataset == "digits":
        from sklearn.model_selection import train_test_split

        images, labels = _digits()
        train, test = train_test_split(range(len(labels)), test_size=0.25, random_state=seed, stratify=labels.numpy())
        data = Data(images[train], labels[train], images[test], labels[test], 10)
    else:
        data = read_cifar(dataset, data_dir, download)
    if limit:
        data = Data(data.x_train[:limit], data.y_train[:limit], data.x_test[:limit], data.y_test[:limit],
                    data.num_classes)
    return data
