"""IoT Device Management: a MQTT service generated from its AsyncAPI document."""
