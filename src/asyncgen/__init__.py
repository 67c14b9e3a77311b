"""asyncgen: generate runnable Python MQTT and NATS services from AsyncAPI documents."""

# Written here rather than read from the installed metadata: importing importlib.metadata
# costs every run, the manifest fast path included, more than all else it does there.
__version__ = "0.1.0"
