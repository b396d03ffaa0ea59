#!/usr/bin/env node
// A device written with the official Node SDKs (azure-iot-device with azure-iot-device-mqtt,
// azure-iot-provisioning-device with azure-iot-provisioning-device-mqtt and
// azure-iot-security-symmetric-key), driven by tests/registry/sdk.rs.
//
// The test is the operator and this script is the device: it reads one JSON command per line on
// stdin and answers each with one JSON line on stdout, so the test decides what happens between
// two steps (approve the device, wait for a token renewal, read the database). The commands and
// answers are the same as tests/sdk/device.py's (see there).
//
// Environment: GYRE_MQTT_PORT (the bridge's port), GYRE_CA_PEM (the development CA to trust),
// and NODE_EXTRA_CA_CERTS naming the same CA: the provisioning client has no option for a
// trusted CA, so Node's own extra-CA setting is how its users trust a private one. The hub
// client takes the CA through `setOptions({ca})`, its documented option. Both SDKs accept
// `host:port` where they take a host name (`GatewayHostName=`, `provisioningHost`), so the
// port the OS picked for the test bridge needs nothing special.

'use strict';

const crypto = require('crypto');
const fs = require('fs');
const readline = require('readline');

const { Client, Message, SharedAccessKeyAuthenticationProvider } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvisioningMqtt } = require('azure-iot-provisioning-device-mqtt');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

const BRIDGE_PORT = Number(process.env.GYRE_MQTT_PORT);
const TRUSTED_CA = fs.readFileSync(process.env.GYRE_CA_PEM, 'ascii');
// A token renewed `renewTokenAfterSeconds` after it was made lives this much longer (the same
// margin as the Python SDK's, so both SDKs' tokens look alike to the bridge).
const TOKEN_RENEWAL_MARGIN_SECONDS = 120;

/** The key of one device of a symmetric-key enrollment group: HMAC-SHA256 of the
 * registration id, keyed with the group key (as DPS and IoT Central document it). */
function derivedDeviceKey(groupKey, registrationId) {
  return crypto
    .createHmac('sha256', Buffer.from(groupKey, 'base64'))
    .update(registrationId, 'utf8')
    .digest('base64');
}

/** The thermostat sample's answer to getMaxMinReport: a report for the period asked. */
function maxMinReport(since) {
  return {
    maxTemp: 25.5,
    minTemp: 18.25,
    avgTemp: 21.0,
    startTime: since,
    endTime: '2026-11-26T00:00:00Z',
  };
}

class Device {
  constructor() {
    this.hub = null; // { hostName, deviceId, key } from the last registration
    this.client = null;
    this.seen = { desired: [], methods: [], messages: [] };
  }

  async provision(command) {
    const key = derivedDeviceKey(command.groupKey, command.registrationId);
    const security = new SymmetricKeySecurityClient(command.registrationId, key);
    const client = ProvisioningDeviceClient.create(
      `${command.host}:${BRIDGE_PORT}`,
      command.idScope,
      new ProvisioningMqtt(),
      security,
    );
    if (command.modelId) {
      client.setProvisioningPayload({ modelId: command.modelId });
    }
    const state = await client.register();
    if (state.status === 'assigned') {
      this.hub = { hostName: state.assignedHub, deviceId: state.deviceId, key };
    }
    return { status: state.status, assignedHub: state.assignedHub, deviceId: state.deviceId };
  }

  async connect(command) {
    if (this.client) {
      throw new Error('already connected');
    }
    let hub;
    if (command.deviceId !== undefined) {
      hub = { hostName: command.hostName, deviceId: command.deviceId, key: command.key };
    } else if (this.hub) {
      hub = this.hub;
    } else {
      throw new Error('connect before a successful provision names no device');
    }
    const connectionString =
      `HostName=${hub.hostName};DeviceId=${hub.deviceId};SharedAccessKey=${hub.key};` +
      `GatewayHostName=${hub.hostName}:${BRIDGE_PORT}`;
    let auth;
    if (command.renewTokenAfterSeconds) {
      // The SDK renews its token `valid - margin` seconds after making it, and reconnects
      // with the new one.
      auth = SharedAccessKeyAuthenticationProvider.fromConnectionString(
        connectionString,
        TOKEN_RENEWAL_MARGIN_SECONDS + command.renewTokenAfterSeconds,
        TOKEN_RENEWAL_MARGIN_SECONDS,
      );
    } else {
      auth = SharedAccessKeyAuthenticationProvider.fromConnectionString(connectionString);
    }
    const client = Client.fromAuthenticationProvider(auth, Mqtt);
    const options = { ca: TRUSTED_CA };
    if (command.modelId) {
      options.modelId = command.modelId;
    }
    await client.setOptions(options);
    try {
      await client.open();
    } catch (error) {
      await client.close().catch(() => {});
      auth.stop();
      throw error;
    }
    this.client = client;
    this.auth = auth;
    return { deviceId: hub.deviceId };
  }

  async send(command) {
    if (!this.client) {
      throw new Error('send without a connection');
    }
    const message = new Message(command.body);
    if (command.json) {
      message.contentType = 'application/json';
      message.contentEncoding = 'utf-8';
    }
    for (const [name, value] of Object.entries(command.properties || {})) {
      message.properties.add(name, value);
    }
    if (command.component) {
      // The Node SDK sends this IoT Plug and Play property as `$.sub`.
      message.properties.add('dt-subject', command.component);
    }
    await this.client.sendEvent(message);
    return {};
  }

  connected() {
    if (!this.client) {
      throw new Error('not connected');
    }
    return this.client;
  }

  /** The IoT Plug and Play thermostat sample: acknowledges desired targetTemperature, answers
   * getMaxMinReport, accepts cloud-to-device messages; see tests/sdk/device.py. */
  async serveThermostat() {
    const client = this.connected();
    const twin = await client.getTwin();
    this.twin = twin;
    // The SDK calls this once with the whole desired document, then with each patch.
    twin.on('properties.desired', (patch) => {
      this.seen.desired.push(patch);
      if (patch.targetTemperature !== undefined) {
        const ack = {
          targetTemperature: {
            value: patch.targetTemperature,
            ac: 200,
            av: patch.$version,
            ad: 'Target temperature set',
          },
        };
        twin.properties.reported.update(ack, (error) => {
          if (error) console.error('acknowledging targetTemperature failed:', error);
        });
      }
    });
    client.onDeviceMethod('getMaxMinReport', (request, response) => {
      this.seen.methods.push({ name: request.methodName, payload: request.payload });
      response.send(200, maxMinReport(request.payload), (error) => {
        if (error) console.error('answering getMaxMinReport failed:', error);
      });
    });
    client.on('message', (message) => {
      const properties = {};
      for (let i = 0; i < message.properties.count(); i++) {
        const { key, value } = message.properties.getItem(i);
        properties[key] = value;
      }
      this.seen.messages.push({
        body: message.data.toString('utf8'),
        properties,
        messageId: message.messageId,
      });
      client.complete(message, () => {});
    });
    return {};
  }

  async reportProperties(command) {
    const twin = this.twin || (await this.connected().getTwin());
    this.twin = twin;
    await new Promise((resolve, reject) =>
      twin.properties.reported.update(command.patch, (error) => (error ? reject(error) : resolve())),
    );
    return {};
  }

  async getTwin() {
    const twin = await this.connected().getTwin();
    this.twin = twin;
    const plain = (properties) => JSON.parse(JSON.stringify(properties));
    return { twin: { desired: plain(twin.properties.desired), reported: plain(twin.properties.reported) } };
  }

  async events() {
    return JSON.parse(JSON.stringify(this.seen));
  }

  async disconnect() {
    if (this.client) {
      const client = this.client;
      this.client = null;
      this.twin = null;
      await client.close();
      this.auth.stop();
    }
    return {};
  }
}

/** A failure as the test sees it: the SDK's error class (`Error` for a bare one), the MQTT
 * CONNACK code when the error carries one, and the message. */
function describeError(error) {
  const name = error && error.constructor ? error.constructor.name : typeof error;
  const described = { error: name, message: String(error && error.message) };
  if (error && typeof error.code === 'number') {
    described.code = error.code;
  }
  return described;
}

async function main() {
  const device = new Device();
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) {
      continue;
    }
    const command = JSON.parse(line);
    let answer;
    try {
      const handler = {
        provision: 1,
        connect: 1,
        send: 1,
        serveThermostat: 1,
        reportProperties: 1,
        getTwin: 1,
        events: 1,
        disconnect: 1,
      }[command.op];
      if (!handler) {
        throw new Error(`unknown op ${command.op}`);
      }
      answer = { op: command.op, ok: true, ...(await device[command.op](command)) };
    } catch (error) {
      answer = { op: command.op, ok: false, ...describeError(error) };
      console.error(`${command.op} failed:`, error);
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
  }
  await device.disconnect();
  // Timers of the SDKs (token renewal, retries) must not keep a finished device alive.
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
