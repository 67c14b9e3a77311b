"""IoT Device Management (NATS): a NATS service generated from its AsyncAPI document."""
