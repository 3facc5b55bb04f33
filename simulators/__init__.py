"""Device simulators: serve a devices.toml's devices over their real protocols.

- :mod:`simulators.signals` - seeded signal models and the ``[device.simulate]`` parser
- :mod:`simulators.modbus_device` - ``ModbusSimServer``: one Modbus TCP server per connection
- :mod:`simulators.mqtt_publisher` - ``MqttJsonPublisher``: store-and-forward JSON publisher
- :mod:`simulators.serve` - ``serve(config, seed=..., stop=...)`` and the ``SIMULATORS`` registry
"""
