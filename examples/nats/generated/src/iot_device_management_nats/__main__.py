"""Run the service: `python -m iot_device_management_nats`."""

from iot_device_management_nats._generated.service import main

if __name__ == "__main__":
    main()
