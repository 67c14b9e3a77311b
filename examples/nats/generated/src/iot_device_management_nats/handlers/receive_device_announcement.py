"""Handler of `receiveDeviceAnnouncement`: Record a device, its type and capabilities in the device registry.

Consumed from the JetStream stream `DEVICES` through the durable consumer `device-registry`; messages are acknowledged after the handler succeeds.

Receives on `devices.announce`. This module is yours: asyncgen wrote it once
and will not touch it again.
"""

from __future__ import annotations

import logging

from iot_device_management_nats._generated import models
from iot_device_management_nats._generated.handlers import MessageContext

logger = logging.getLogger(__name__)


async def handle(
    message: models.DeviceAnnouncement,
    context: MessageContext,
) -> None:
    """Handle one validated message of `receiveDeviceAnnouncement`."""
    logger.info("%s on %s: %s", "receiveDeviceAnnouncement", context.subject, message)
