"""Telemetry over MQTT (aiomqtt, a real broker such as mosquitto): every running session publishes
its identity, state and events under ``<prefix>/<site>/<session>/<kind>``.

Off the hot path: the publisher subscribes to the event bus like any other listener and runs
its own asyncio thread. ``config`` and ``connection`` import no MQTT client (the site file's
parsing loads ``config``); only ``publisher`` (and whoever connects) imports aiomqtt.
"""
