"""Handler of `receiveTemperatureReading`: Store a reading and raise an alert when it is above the threshold.

Every replica of the service joins the `telemetry-processors` queue group, so each reading is handled by one replica.

Receives on `sensors.temperature.{deviceId}`. This module is yours: asyncgen wrote it once
and will not touch it again.
"""

from __future__ import annotations

import logging

from iot_device_management_nats._generated import models
from iot_device_management_nats._generated.channels import TemperatureReadingsParams
from iot_device_management_nats._generated.handlers import MessageContext

logger = logging.getLogger(__name__)


async def handle(
    message: models.TemperatureReading,
    params: TemperatureReadingsParams,
    context: MessageContext,
) -> None:
    """Handle one validated message of `receiveTemperatureReading`."""
    logger.info(
        "%s on %s %s: %s", "receiveTemperatureReading", context.subject, params, message
    )
