"""Copies a finished run's evidence into experiments/<name>/ and draws its curve.

  python experiments/collect_run.py WORKDIR experiments/NAME [--log FILE]

Writes metrics.jsonl, config.json, the last prediction grid (predictions.png),
curve.png (training loss, and eval F1 / mIoU, against the step, drawn with
PIL), and copies the console log when given; prints the final eval line.
"""

import argparse
import glob
import json
import os
import shutil

from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 640, 360, 40


def _polyline(draw, points, x_range, y_range, colour):
  (x0, x1), (y0, y1) = x_range, y_range
  scale = lambda x, y: (MARGIN + (x - x0) / max(x1 - x0, 1e-9) * (WIDTH - 2 * MARGIN),
                        HEIGHT - MARGIN - (y - y0) / max(y1 - y0, 1e-9) * (HEIGHT - 2 * MARGIN))
  scaled = [scale(x, y) for x, y in points if y is not None]
  if len(scaled) > 1:
    draw.line(scaled, fill=colour, width=2)
  for x, y in scaled:
    draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)


def draw_curve(events, path):
  train = [(e["step"], e["loss"]) for e in events if e["split"] == "train"]
  evals = [e for e in events if e["split"] == "eval"]
  steps = [s for s, _ in train] + [e["step"] for e in evals]
  x_range = (0, max(steps))
  image = Image.new("RGB", (WIDTH, HEIGHT), "white")
  draw = ImageDraw.Draw(image)
  draw.rectangle((MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN), outline="black")
  top = max(l for _, l in train)
  _polyline(draw, train, x_range, (0, top), (200, 30, 30))
  _polyline(draw, [(e["step"], e["f1"]) for e in evals], x_range, (0, 1), (30, 30, 200))
  _polyline(draw, [(e["step"], e["mean_iou"]) for e in evals], x_range, (0, 1), (30, 150, 30))
  draw.text((MARGIN, 10), f"red: train loss (0..{top:.3g})   blue: eval F1   green: eval mIoU "
                          f"(0..1)   x: step 0..{x_range[1]}", fill="black")
  image.save(path)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("destination")
  parser.add_argument("--log")
  args = parser.parse_args()
  os.makedirs(args.destination, exist_ok=True)
  for name in ("metrics.jsonl", "config.json"):
    shutil.copy(os.path.join(args.workdir, name), args.destination)
  grids = sorted(glob.glob(os.path.join(args.workdir, "predictions", "*.png")))
  shutil.copy(grids[-1], os.path.join(args.destination, "predictions.png"))
  if args.log:
    shutil.copy(args.log, os.path.join(args.destination, "log.txt"))
  with open(os.path.join(args.workdir, "metrics.jsonl")) as f:
    events = [json.loads(line) for line in f]
  draw_curve(events, os.path.join(args.destination, "curve.png"))
  print(json.dumps([e for e in events if e["split"] == "eval"][-1]))


if __name__ == "__main__":
  main()
