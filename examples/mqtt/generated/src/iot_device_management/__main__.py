"""Run the service: `python -m iot_device_management`."""

from iot_device_management._generated.service import main

if __name__ == "__main__":
    main()
