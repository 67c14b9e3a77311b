"""Handler of `receiveStatusRequest`: Receive a GetStatus request and reply with the device's last known status.

Receives on `devices.{deviceId}.status`. This module is yours: asyncgen wrote it once
and will not touch it again.
"""

from __future__ import annotations

import logging

from iot_device_management_nats._generated import models
from iot_device_management_nats._generated.channels import DeviceStatusRequestsParams
from iot_device_management_nats._generated.handlers import MessageContext

logger = logging.getLogger(__name__)


async def handle(
    message: models.GetStatus,
    params: DeviceStatusRequestsParams,
    context: MessageContext,
) -> models.DeviceStatus:
    """Handle one validated message of `receiveStatusRequest`."""
    logger.info(
        "%s on %s %s: %s", "receiveStatusRequest", context.subject, params, message
    )
    # A placeholder reply taken from the spec's example: replace it with the real one.
    return models.DeviceStatus.model_validate(
        {
            "deviceId": "sensor001",
            "online": True,
            "lastSeen": "2024-01-15T10:29:58Z",
            "firmwareVersion": "2.1.0",
            "batteryLevel": 87.5,
            "uptime": 86400,
        }
    )
