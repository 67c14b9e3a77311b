"""asyncgen: generate runnable Python MQTT and NATS services from AsyncAPI documents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("asyncgen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
