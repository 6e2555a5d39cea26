"""Mattes for motion-brush regions: which part of a brushed polygon is the thing that moves, and
the ground it uncovers filled in.

A brush is drawn loosely around a thing (a boat, a kite). Moving the whole polygon would carry a
hard-edged piece of its background along and cut whatever crosses its edge. GrabCut, seeded
with the polygon as probable foreground and a ring just outside it as background, finds the
thing by colour; its matte is feathered so the edge is soft. Where the inside of the polygon does
not stand out from its ring (a brushed patch of water or grass), the brushed area itself is what
moves, with a feathered edge.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_INPAINT_SIDE = 480  # inpaint on a copy this size at most: the fill is soft anyway, and 10x faster
_GRABCUT_SIDE = 160  # segment a region's box at most this size (0.08 s; 256 px takes 0.4 s)
_MIN_THING = 0.08  # a segmentation keeping less of the polygon than this found nothing in it
_MIN_CONTRAST = 0.35  # Bhattacharyya distance between the thing's colours and its ring's


def content_matte(image: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Soft matte (uint8, 0..255, image-sized) of what the brushed `polygon` mask holds."""
    ys, xs = np.nonzero(polygon)
    if not len(xs):
        return polygon
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    side = max(x1 - x0, y1 - y0)
    # Gaussian sigma of the matte's edge in plate pixels: at least half a pixel of the downscaled
    # segmentation, so its steps do not show.
    feather = max(1.0, 0.015 * side, 0.5 * side / _GRABCUT_SIDE)
    margin = max(6, round(0.12 * side + 3 * feather))
    height, width = polygon.shape
    box = np.s_[max(0, y0 - margin):min(height, y1 + margin), max(0, x0 - margin):min(width, x1 + margin)]
    inside = polygon[box] > 127
    thing = _segment(image[box], inside)
    area = inside if thing is None else thing
    soft = cv2.GaussianBlur(area.astype(np.float32), (0, 0), feather)
    # The matte stays within a feathered polygon: the brush says where motion may be.
    soft *= cv2.GaussianBlur(polygon[box].astype(np.float32) / 255, (0, 0), feather) if thing is not None else 1
    matte = np.zeros_like(polygon)
    matte[box] = np.clip(soft * 255 + 0.5, 0, 255).astype(np.uint8)
    return matte


def _segment(crop: np.ndarray, inside: np.ndarray) -> np.ndarray | None:
    """The pixels of `crop` GrabCut finds to be a thing inside the polygon, or None when the
    inside does not stand out from its surroundings."""
    if inside.all() or not inside.any():
        return None  # no ring of background to learn from
    scale = min(1.0, _GRABCUT_SIDE / max(crop.shape[:2]))
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    small_inside = cv2.resize(inside.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    labels = np.where(small_inside, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    try:
        cv2.grabCut(small, labels, None, np.zeros((1, 65)), np.zeros((1, 65)), 3, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a flat box: one colour gives GrabCut no model to fit
        return None
    thing = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)) & small_inside
    share = thing.sum() / small_inside.sum()
    if share < _MIN_THING or share > 0.97:
        return None
    if _contrast(small, thing, ~small_inside) < _MIN_CONTRAST:
        return None  # a split of one texture by chance, not a thing
    # Keep the largest piece: specks the texture lends the foreground model would move too.
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(thing.astype(np.uint8), connectivity=8)
    if count > 2:
        thing = pieces == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return cv2.resize(thing.astype(np.uint8), (crop.shape[1], crop.shape[0]),
                      interpolation=cv2.INTER_LINEAR).astype(bool)


def _contrast(image: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """Bhattacharyya distance (0 same, 1 disjoint) between two areas' colour histograms."""
    hists = []
    for area in (first, second):
        hist = cv2.calcHist([image], [0, 1, 2], area.astype(np.uint8), [8, 8, 8], [0, 256] * 3)
        hists.append(cv2.normalize(hist, hist).flatten())
    return float(cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_BHATTACHARYYA))


def fill_uncovered(plate: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """The plate with what the matte covers filled in from its surroundings: Telea inpainting for
    the colours, plus grain copied from beside the hole so the fill is not a smooth smear. Only
    the hole's neighbourhood is worked on."""
    ys, xs = np.nonzero(matte > 2)
    if not len(xs):
        return plate.copy()
    height, width = plate.shape[:2]
    detail = max(2.5, 0.008 * max(height, width))  # finer than this comes from beside the hole
    pad = round(max(8, 4 * detail, 0.25 * max(xs.max() - xs.min(), ys.max() - ys.min())))
    top, left = max(0, ys.min() - pad), max(0, xs.min() - pad)
    box = np.s_[top:min(height, ys.max() + 1 + pad), left:min(width, xs.max() + 1 + pad)]
    crop = plate[box]
    scale = min(1.0, _INPAINT_SIDE / max(crop.shape[:2]))
    small_size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    # Grow the hole so the matte's soft rim, and the pixels the shrink blends into it, are refilled.
    grow = 2 * math.ceil(1 / scale) + 1
    hole = cv2.dilate((matte[box] > 2).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    small = cv2.resize(crop, small_size, interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole, small_size, interpolation=cv2.INTER_AREA)
    filled = cv2.inpaint(small, (small_hole > 0).astype(np.uint8), 3, cv2.INPAINT_TELEA)
    filled = cv2.resize(filled, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    # Telea carries colours in along streaks: keep only its broad colours.
    filled = cv2.GaussianBlur(filled, (0, 0), detail) + _grain_beside(plate, hole, (top, left), detail)
    # A soft seam between the fill and the untouched plate.
    weight = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), 1.5)[..., None]
    weight = np.maximum(weight, hole[..., None].astype(np.float32))
    result = plate.copy()
    result[box] = np.clip(crop * (1 - weight) + filled * weight + 0.5, 0, 255).astype(np.uint8)
    return result


def _grain_beside(plate: np.ndarray, hole: np.ndarray, origin: tuple[int, int], sigma: float) -> np.ndarray:
    """Fine detail (the plate minus its blur) for a `hole` whose top-left is `origin` on the plate,
    taken from a box of the hole's size next to it, the neighbour overlapping the hole least;
    zero where no neighbour fits on the plate."""
    grain = np.zeros((*hole.shape, 3), np.float32)
    ys, xs = np.nonzero(hole)
    x0, y0, x1, y1 = xs.min() + origin[1], ys.min() + origin[0], xs.max() + 1 + origin[1], ys.max() + 1 + origin[0]
    w, h = x1 - x0, y1 - y0
    height, width = plate.shape[:2]
    offsets = [(dx, dy) for dx, dy in ((-w, 0), (w, 0), (0, -h), (0, h), (-w, -h), (w, -h), (-w, h), (w, h))
               if 0 <= x0 + dx and x1 + dx <= width and 0 <= y0 + dy and y1 + dy <= height]
    if not offsets:
        return grain
    full_hole = np.zeros((height, width), np.uint8)
    full_hole[origin[0]:origin[0] + hole.shape[0], origin[1]:origin[1] + hole.shape[1]] = hole
    dx, dy = min(offsets, key=lambda o: int(full_hole[y0 + o[1]:y1 + o[1], x0 + o[0]:x1 + o[0]].sum()))
    margin = math.ceil(3 * sigma)
    sy0, sx0 = max(0, y0 + dy - margin), max(0, x0 + dx - margin)
    donor = plate[sy0:min(height, y1 + dy + margin), sx0:min(width, x1 + dx + margin)].astype(np.float32)
    detail = donor - cv2.GaussianBlur(donor, (0, 0), sigma)
    top, left = y0 - origin[0], x0 - origin[1]
    grain[top:top + h, left:left + w] = detail[y0 + dy - sy0:y1 + dy - sy0, x0 + dx - sx0:x1 + dx - sx0]
    return grain * hole[..., None]
