"""Pictures a person looks at: modality montages and label overlays (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from custom_nets.utils import atomic_path  # noqa: E402

DEFAULT_TASK = "brats2021"


def palette(task=DEFAULT_TASK) -> tuple[ListedColormap, list[str]]:
    """The colour map of a task's class indices (background transparent) and its class names, for the legend."""
    from custom_nets.data.tasks import load_task

    task = load_task(task)
    colours = [(0, 0, 0, 0)] + [(*c, 0.55) for c in task.colours]
    return ListedColormap(colours), list(task.class_names[1:])


def _overlay(ax, classes: np.ndarray, axis: int, index: int, task, aspect: float = 1.0) -> None:
    cmap, names = palette(task)
    shown = _slice(classes, axis, index)
    ax.imshow(shown, cmap=cmap, vmin=0, vmax=len(names), interpolation="nearest", aspect=aspect)


def _aspect(spacing: Sequence[float] | None, axis: int) -> float:
    """The height / width of a pixel of ``_slice(volume, axis, ...)`` for voxels of ``spacing`` (thick slices are
    drawn thick)."""
    if spacing is None:
        return 1.0
    cols, rows = (a for a in range(3) if a != axis)
    return float(spacing[rows]) / float(spacing[cols])


def _window(image: np.ndarray) -> tuple[float, float]:
    values = image[image != 0] if np.any(image != 0) else image.ravel()  # skull-stripped: 0 is air
    return float(np.percentile(values, 0.5)), float(np.percentile(values, 99.5))


def tumour_centre(classes: np.ndarray | None, shape: Sequence[int]) -> tuple[int, int, int]:
    """Centre of mass of the tumour (any class > 0), or of the volume when there is none."""
    if classes is not None and np.any(classes > 0):
        return tuple(int(round(c)) for c in np.argwhere(classes > 0).mean(0))
    return tuple(s // 2 for s in shape)


def _slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.rot90(np.take(volume, index, axis=axis))


def _save(fig, output_file: str, dpi: int) -> None:
    with atomic_path(output_file) as temporary:
        fig.savefig(temporary, dpi=dpi, format="png")
    plt.close(fig)


def _legend(fig, task=DEFAULT_TASK) -> None:
    cmap, names = palette(task)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(k + 1)) for k in range(len(names))]
    fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False)


def modality_montage(
    images: Mapping[str, np.ndarray],
    classes: np.ndarray | None,
    output_file: str,
    title: str = "",
    task=DEFAULT_TASK,
    spacing: Sequence[float] | None = None,
) -> str:
    """One axial slice through the tumour centre for each modality, plus the task's classes over the last one;
    ``spacing`` (mm) sets the pixels' aspect."""
    first = next(iter(images.values()))
    _, _, k = tumour_centre(classes, first.shape)
    panels = len(images) + (classes is not None)
    fig, axes = plt.subplots(1, panels, figsize=(3 * panels, 3.4))
    for ax, (name, image) in zip(axes, images.items(), strict=False):
        lo, hi = _window(image)
        ax.imshow(_slice(image, 2, k), cmap="gray", vmin=lo, vmax=hi, aspect=_aspect(spacing, 2))
        ax.set_title(name)
    if classes is not None:
        name, image = list(images.items())[-1]
        lo, hi = _window(image)
        axes[-1].imshow(_slice(image, 2, k), cmap="gray", vmin=lo, vmax=hi, aspect=_aspect(spacing, 2))
        _overlay(axes[-1], classes, 2, k, task, _aspect(spacing, 2))
        axes[-1].set_title(f"labels on {name}")
        _legend(fig, task)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{title} (axial slice {k})".strip())
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, output_file, dpi=100)
    return output_file


def orthogonal_overlay(
    background: np.ndarray,
    overlays: Mapping[str, np.ndarray | None],
    output_file: str,
    title: str = "",
    centre_on: np.ndarray | None = None,
    task=DEFAULT_TASK,
    heat: Mapping[str, np.ndarray] | None = None,
    spacing: Sequence[float] | None = None,
) -> str:
    """Axial, coronal and sagittal slices through the tumour centre; one row per overlay (e.g. truth, prediction) of
    the task's class indices, with a legend of its classes, then one row per ``heat`` map in [0, 1] (e.g. an
    ensemble's uncertainty), drawn alone in a colour map with its colour bar. ``spacing`` (mm, of the volumes'
    axes) sets the pixels' aspect, so that a scan of thick slices is drawn in its true proportions."""
    centre = tumour_centre(centre_on if centre_on is not None else next(iter(overlays.values())), background.shape)
    lo, hi = _window(background)
    rows = [(name, classes, False) for name, classes in overlays.items()]
    rows += [(name, values, True) for name, values in (heat or {}).items()]
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3.2 * len(rows) + 0.4), squeeze=False)
    for row, (name, values, is_heat) in enumerate(rows):
        for col, (axis, view) in enumerate(zip((2, 1, 0), ("axial", "coronal", "sagittal"), strict=True)):
            ax = axes[row, col]
            aspect = _aspect(spacing, axis)
            if is_heat:  # alone: a bright image under it would read as uncertain
                shown = ax.imshow(_slice(values, axis, centre[axis]), cmap="inferno", vmin=0, vmax=1, aspect=aspect)
                if col == 2:
                    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
            else:
                ax.imshow(_slice(background, axis, centre[axis]), cmap="gray", vmin=lo, vmax=hi, aspect=aspect)
            if not is_heat and values is not None:
                _overlay(ax, values, axis, centre[axis], task, aspect)
            ax.set_title(f"{name}: {view} {centre[axis]}", fontsize=9)
            ax.axis("off")
    _legend(fig, task)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, output_file, dpi=90)
    return output_file


def compare_volumes(
    real: tuple[str, np.ndarray],
    synthesized: tuple[str, np.ndarray],
    output_file: str,
    title: str = "",
    show_difference: bool = True,
) -> str:
    """Axial, coronal and sagittal slices through the centre of the brain: one row for ``real`` and one for
    ``synthesized`` (each a ``(name, volume)``) in the real volume's grey window, and with ``show_difference`` a row
    of ``|synthesized - real|`` in a heat map of the same scale."""
    (real_name, real_volume), (synth_name, synth_volume) = real, synthesized
    brain = np.argwhere(real_volume != real_volume.min()) if np.any(real_volume != real_volume.min()) else None
    centre = tuple(int(c) for c in brain.mean(0)) if brain is not None else tuple(s // 2 for s in real_volume.shape)
    lo, hi = _window(real_volume)
    rows = [(real_name, real_volume, "gray", lo, hi), (synth_name, synth_volume, "gray", lo, hi)]
    if show_difference:
        rows.append(("|difference|", np.abs(synth_volume - real_volume), "magma", 0.0, (hi - lo) / 2))
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3.1 * len(rows) + 0.3), squeeze=False)
    for row, (name, volume, cmap, vmin, vmax) in enumerate(rows):
        for col, (axis, view) in enumerate(zip((2, 1, 0), ("axial", "coronal", "sagittal"), strict=True)):
            ax = axes[row, col]
            ax.imshow(_slice(volume, axis, centre[axis]), cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(f"{name}: {view} {centre[axis]}")
            ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, output_file, dpi=90)
    return output_file


def missing_modality_figure(
    images: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    output_file: str,
    title: str = "",
    task=DEFAULT_TASK,
) -> str:
    """One axial slice through the tumour centre (of the first label map): the first row ``images`` (the real and
    the synthesized sequence, in the real one's grey window) and their difference; the second row each label map
    (ground truth, segmentations) over the first image. Volumes in RAS."""
    (real_name, real), (_, synthesized) = list(images.items())[:2]
    _, _, k = tumour_centre(next(iter(labels.values())), real.shape)
    lo, hi = _window(real)
    columns = max(len(images) + 1, len(labels))
    fig, axes = plt.subplots(2, columns, figsize=(3 * columns, 7.4), squeeze=False)
    for ax, (name, volume) in zip(axes[0], images.items(), strict=False):
        ax.imshow(_slice(volume, 2, k), cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(name)
    axes[0, len(images)].imshow(_slice(np.abs(synthesized - real), 2, k), cmap="magma", vmin=0, vmax=(hi - lo) / 2)
    axes[0, len(images)].set_title("|difference|")
    for ax, (name, classes) in zip(axes[1], labels.items(), strict=False):
        ax.imshow(_slice(real, 2, k), cmap="gray", vmin=lo, vmax=hi)
        _overlay(ax, classes, 2, k, task)
        ax.set_title(name, fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    _legend(fig, task)
    fig.suptitle(f"{title} (axial slice {k}, labels over {real_name})".strip())
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, output_file, dpi=90)
    return output_file
