"""Handler of `receiveTelemetry`: Process sensor readings sent by a device.

Receives on `devices/{deviceId}/telemetry`. This module is yours: asyncgen wrote it once
and will not touch it again.
"""

from __future__ import annotations

import logging

from iot_device_management._generated import models
from iot_device_management._generated.channels import DeviceTelemetryParams
from iot_device_management._generated.handlers import MessageContext

logger = logging.getLogger(__name__)


async def handle(
    message: models.TelemetryPayload,
    params: DeviceTelemetryParams,
    context: MessageContext,
) -> None:
    """Handle one validated message of `receiveTelemetry`."""
    logger.info("%s on %s %s: %s", "receiveTelemetry", context.topic, params, message)
