"""Handler of `receiveStatus`: Track the health and status reported by a device.

Receives on `devices/{deviceId}/status`. This module is yours: asyncgen wrote it once
and will not touch it again.
"""

from __future__ import annotations

import logging

from iot_device_management._generated import models
from iot_device_management._generated.channels import DeviceStatusParams
from iot_device_management._generated.handlers import MessageContext

logger = logging.getLogger(__name__)


async def handle(
    message: models.DeviceStatus,
    params: DeviceStatusParams,
    context: MessageContext,
) -> None:
    """Handle one validated message of `receiveStatus`."""
    logger.info("%s on %s %s: %s", "receiveStatus", context.topic, params, message)
