"""Draw the example reference images (deterministic, small PNGs) used by the example storyboards.

Run: python examples/make_references.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).parent / "references"


def kite_meadow(width: int = 960, height: int = 540) -> np.ndarray:
    """A meadow under a sky with two clouds and a red kite: regions a motion brush can move."""
    rng = np.random.default_rng(7)
    y = np.linspace(0, 1, height)[:, None, None]
    sky = (1 - y) * np.array([235, 180, 110]) + y * np.array([250, 225, 200])  # BGR: blue to pale
    image = np.repeat(sky, width, axis=1).astype(np.float32)
    horizon = int(height * 0.62)
    grass = np.array([60, 150, 80], np.float32) + rng.normal(0, 18, (height - horizon, width, 1))
    image[horizon:] = grass * np.linspace(0.8, 1.15, height - horizon)[:, None, None]
    for x in range(0, width, 7):  # grass blades give the ground texture to track
        top = horizon + int(rng.integers(5, height - horizon))
        cv2.line(image, (x, top), (x + int(rng.integers(-4, 5)), top - 14), (40, 110, 55), 2)
    cv2.ellipse(image, (int(width * 0.55), horizon), (int(width * 0.3), 40), 0, 180, 360, (90, 140, 100), -1)
    for cx, cy, s in ((0.2, 0.18, 1.0), (0.78, 0.12, 0.8)):
        for dx, dy, r in ((0, 0, 34), (30, 6, 28), (-30, 8, 26), (60, 14, 20)):
            cv2.circle(image, (int(width * cx + dx * s), int(height * cy + dy * s)), int(r * s),
                       (250, 250, 250), -1, cv2.LINE_AA)
    kite = np.array([[0.42, 0.30], [0.47, 0.22], [0.52, 0.30], [0.47, 0.42]]) * [width, height]
    cv2.fillPoly(image, [kite.astype(np.int32)], (40, 40, 220), cv2.LINE_AA)
    cv2.line(image, tuple(map(int, kite[0])), tuple(map(int, kite[2])), (30, 200, 240), 2)
    cv2.line(image, tuple(map(int, kite[3])), (int(width * 0.35), horizon + 60), (60, 60, 60), 1)
    return np.clip(image, 0, 255).astype(np.uint8)


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    cv2.imwrite(str(HERE / "kite-meadow.jpg"), kite_meadow(), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {HERE / 'kite-meadow.jpg'}")
