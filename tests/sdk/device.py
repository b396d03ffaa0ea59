#!/usr/bin/env python3
"""A device written with the official Python SDK (azure-iot-device), driven by
tests/registry/sdk.rs.

The test is the operator and this script is the device: it reads one JSON command per line on
stdin and answers each with one JSON line on stdout, so the test decides what happens between
two steps (approve the device, wait for a token renewal, read the database). Commands:

  {"op": "provision", "host", "idScope", "registrationId", "groupKey", "modelId"}
      derives the device key from the enrollment group's key (as a device maker does), registers
      through DPS and remembers the assigned hub, device id and key for "connect".
  {"op": "connect", ["hostName", "deviceId", "key"], ["modelId"], ["renewTokenAfterSeconds"]}
      opens a hub connection; without hostName/deviceId/key it uses what "provision" returned.
  {"op": "send", "body", ["json": true], ["component"], ["properties": {..}]}
      sends one telemetry message and answers once the bridge acknowledged it.
  {"op": "serveThermostat"}
      behaves as the IoT Plug and Play thermostat sample: acknowledges every desired
      `targetTemperature` with {"value", "ac": 200, "av": <desired $version>, "ad"}, answers
      `getMaxMinReport` with a report built from its request, and accepts cloud-to-device
      messages; everything received is kept for "events".
  {"op": "reportProperties", "patch": {..}}
      sends a reported-properties patch and answers once the hub accepted it.
  {"op": "getTwin"}   answers {"twin": {"desired": .., "reported": ..}}.
  {"op": "events"}    answers {"desired": [patch..], "methods": [{"name", "payload"}..],
      "messages": [{"body", "properties", "messageId"}..]}: what the handlers saw since connect.
  {"op": "disconnect"}
Answers: {"op": .., "ok": true, ..} or {"op": .., "ok": false, "error": <exception class>,
"message": .., ["code": <CONNACK code>, Node only]}. The script exits at the end of stdin.

Environment: GYRE_MQTT_PORT (the bridge's port), GYRE_CA_PEM (the development CA to trust).
The SDK's own log goes to stderr at WARNING (GYRE_SDK_LOG=DEBUG for everything).
"""

import base64
import hashlib
import hmac
import json
import logging
import os
import sys

import paho.mqtt.client as paho
import threading

from azure.iot.device import (
    IoTHubDeviceClient,
    Message,
    MethodResponse,
    ProvisioningDeviceClient,
)

BRIDGE_PORT = int(os.environ["GYRE_MQTT_PORT"])
with open(os.environ["GYRE_CA_PEM"], encoding="ascii") as ca_file:
    TRUSTED_CA = ca_file.read()

# The SDK dials port 8883 and offers no way to change it (common/mqtt_transport.py passes
# port=8883 to paho, or 443 for websockets). The test bridge listens on a port the OS picked,
# so that several tests can run at once, so the port is replaced where the SDK hands it to
# paho. Nothing else about the connection changes: the host name (SNI and certificate check),
# TLS settings, username and password are still the SDK's own.
_paho_connect = paho.Client.connect


def _connect_to_the_test_bridge(self, host, port=1883, **kwargs):
    return _paho_connect(self, host, port=BRIDGE_PORT, **kwargs)


paho.Client.connect = _connect_to_the_test_bridge

# IoT Hub's own renewal margin (SasTokenStage.DEFAULT_TOKEN_UPDATE_MARGIN): the SDK renews its
# token, and reconnects with it, this long before the token expires.
TOKEN_RENEWAL_MARGIN_SECONDS = 120


def derived_device_key(group_key: str, registration_id: str) -> str:
    """The key of one device of a symmetric-key enrollment group, as DPS and IoT Central
    document it: HMAC-SHA256 of the registration id, keyed with the group key."""
    digest = hmac.new(
        base64.b64decode(group_key), registration_id.encode("utf-8"), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def max_min_report(since):
    """The thermostat sample's answer to getMaxMinReport: a report for the period asked."""
    return {
        "maxTemp": 25.5,
        "minTemp": 18.25,
        "avgTemp": 21.0,
        "startTime": since,
        "endTime": "2026-11-26T00:00:00Z",
    }


class Device:
    def __init__(self):
        self.hub = None  # (host name, device id, key) from the last registration
        self.client = None
        self.lock = threading.Lock()
        self.seen = {"desired": [], "methods": [], "messages": []}

    def provision(self, command):
        key = derived_device_key(command["groupKey"], command["registrationId"])
        client = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=command["host"],
            registration_id=command["registrationId"],
            id_scope=command["idScope"],
            symmetric_key=key,
            server_verification_cert=TRUSTED_CA,
        )
        if command.get("modelId"):
            client.provisioning_payload = {"modelId": command["modelId"]}
        # The client disconnects once registered (or refused); 2.14 has no shutdown() for it.
        result = client.register()
        state = result.registration_state
        answer = {"status": result.status}
        if state is not None:
            answer.update(assignedHub=state.assigned_hub, deviceId=state.device_id)
            if result.status == "assigned":
                self.hub = (state.assigned_hub, state.device_id, key)
        return answer

    def connect(self, command):
        if self.client is not None:
            raise RuntimeError("already connected")
        if "deviceId" in command:
            host, device_id, key = command["hostName"], command["deviceId"], command["key"]
        elif self.hub is not None:
            host, device_id, key = self.hub
        else:
            raise RuntimeError("connect before a successful provision names no device")
        options = {"server_verification_cert": TRUSTED_CA}
        if command.get("modelId"):
            # How the Python SDK announces an IoT Plug and Play model id.
            options["product_info"] = command["modelId"]
        if command.get("renewTokenAfterSeconds"):
            options["sastoken_ttl"] = (
                TOKEN_RENEWAL_MARGIN_SECONDS + command["renewTokenAfterSeconds"]
            )
        client = IoTHubDeviceClient.create_from_symmetric_key(
            symmetric_key=key, hostname=host, device_id=device_id, **options
        )
        try:
            client.connect()
        except BaseException:
            client.shutdown()
            raise
        self.client = client
        return {"deviceId": device_id}

    def send(self, command):
        if self.client is None:
            raise RuntimeError("send without a connection")
        message = Message(command["body"])
        if command.get("json"):
            message.content_type = "application/json"
            message.content_encoding = "utf-8"
        properties = dict(command.get("properties", {}))
        if command.get("component"):
            # The v2 SDK has no component helper: IoT Plug and Play devices set `$.sub`.
            properties["$.sub"] = command["component"]
        message.custom_properties = properties
        self.client.send_message(message)
        return {}

    def serve_thermostat(self, _command):
        client = self._connected()

        def on_desired(patch):
            with self.lock:
                self.seen["desired"].append(patch)
            if "targetTemperature" in patch:
                client.patch_twin_reported_properties(
                    {
                        "targetTemperature": {
                            "value": patch["targetTemperature"],
                            "ac": 200,
                            "av": patch["$version"],
                            "ad": "Target temperature set",
                        }
                    }
                )

        def on_method(request):
            with self.lock:
                self.seen["methods"].append({"name": request.name, "payload": request.payload})
            if request.name == "getMaxMinReport":
                response = MethodResponse.create_from_method_request(
                    request, 200, max_min_report(request.payload)
                )
            else:
                response = MethodResponse.create_from_method_request(
                    request, 404, {"error": "unknown command " + request.name}
                )
            client.send_method_response(response)

        def on_message(message):
            data = message.data
            with self.lock:
                self.seen["messages"].append(
                    {
                        "body": data.decode("utf-8") if isinstance(data, bytes) else data,
                        "properties": message.custom_properties,
                        "messageId": message.message_id,
                    }
                )

        # Setting a handler subscribes to its topics before it returns.
        client.on_twin_desired_properties_patch_received = on_desired
        client.on_method_request_received = on_method
        client.on_message_received = on_message
        return {}

    def report_properties(self, command):
        self._connected().patch_twin_reported_properties(command["patch"])
        return {}

    def get_twin(self, _command):
        return {"twin": self._connected().get_twin()}

    def events(self, _command):
        with self.lock:
            return {kind: list(items) for kind, items in self.seen.items()}

    def _connected(self):
        if self.client is None:
            raise RuntimeError("not connected")
        return self.client

    def disconnect(self, _command):
        if self.client is not None:
            client, self.client = self.client, None
            client.shutdown()
        return {}


def main():
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("GYRE_SDK_LOG", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    device = Device()
    handlers = {
        "provision": device.provision,
        "connect": device.connect,
        "send": device.send,
        "serveThermostat": device.serve_thermostat,
        "reportProperties": device.report_properties,
        "getTwin": device.get_twin,
        "events": device.events,
        "disconnect": device.disconnect,
    }
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        op = command.get("op")
        try:
            answer = {"op": op, "ok": True, **handlers[op](command)}
        except Exception as error:  # every failure is an answer the test asserts on
            answer = {"op": op, "ok": False, "error": type(error).__name__, "message": str(error)}
            logging.getLogger("device").warning("%s failed", op, exc_info=True)
        print(json.dumps(answer), flush=True)
    device.disconnect({})


if __name__ == "__main__":
    main()
