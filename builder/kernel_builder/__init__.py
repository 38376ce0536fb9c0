"""kernel_builder: builds kernel variants from build.toml (CLI: `kernel-builder`)."""

__version__ = "0.1.0"
