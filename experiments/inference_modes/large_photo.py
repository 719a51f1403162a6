"""Peak memory of segmenting one large photo (e.g. 4000x3000) at its own resolution.

  PYTHONPATH=. python experiments/inference_modes/large_photo.py RUN PHOTO [whole|slide]

Restores RUN, overrides its test scale with the photo's own size (scale=()),
segments PHOTO once (compilation included) and prints the time and the peak
resident memory of the process.
"""

import resource
import sys
import time

from segjax import predict


def main():
  workdir, photo = sys.argv[1], sys.argv[2]
  mode = sys.argv[3] if len(sys.argv) > 3 else "slide"
  start = time.time()
  predictor = predict.Predictor(workdir, mode=mode, scale=())
  image = predictor.load_image(photo)
  mask = predictor.predict(image)
  options = predictor.segmenter.options
  print(f"{mode}: {image.shape[1]}x{image.shape[0]} photo -> mask {mask.shape}, "
        f"{time.time() - start:.1f} s with compilation; {options.window} windows every "
        f"{options.step} px, {options.window_batch_size} per call; peak resident memory "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
  main()
