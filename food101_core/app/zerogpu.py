"""ZeroGPU, the only Gradio-Space hardware a free Hugging Face account can create (docs/deploy.md).

ZeroGPU stops a Space whose process sends no start-up report, and the `spaces` package sends it, inside the first
`launch()`, only when at least one `@spaces.GPU` function exists. So the app registers exactly one. It is never on
a visitor's path: the model runs on the CPU with ONNX Runtime (about 10-20 ms a photo), while each call of a
`@spaces.GPU` function forks a worker and waits for a GPU slot from the visitor's daily quota, which would cost
far more than the prediction it runs. Without `spaces` (CPU Basic, a laptop) nothing here does anything.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType


def register(spaces: ModuleType | None) -> Callable[[], str] | None:
    """Register the app's one `@spaces.GPU` function where `spaces` is installed; return it (None without)."""
    if spaces is None:
        return None

    @spaces.GPU(duration=10)
    def accelerator() -> str:
        """What a ZeroGPU slot holds (for a person checking a Space by hand); the app never calls it."""
        try:
            with open("/proc/driver/nvidia/gpus/0/information") as f:  # no torch needed to name the GPU
                return f.read().strip()
        except OSError:
            return "no NVIDIA GPU visible"

    return accelerator
