"""Local mode: moto server on loopback, the same resources from the same config/naming, a local gateway."""
