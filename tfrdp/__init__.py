"""tfrdp: learned lossy compression under the rate-distortion-perception tradeoff."""

__version__ = "0.1.0"
