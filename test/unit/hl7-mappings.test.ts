/**
 * The shipped HL7 mappings (mappings/lab-question-to-orm, note-to-mdm, authorization-to-rqa) and
 * the routing channel (channels/whatsapp-care-routing.yaml), rendered through the hl7v2_mllp
 * destination without any network: what a partner would receive, checked by @medplum/core and
 * the Redox v2.5 schema parser, plus which messages the `when` predicates send where.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { Hl7Message } from '@medplum/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadChannelFile } from '../../src/channels/load-channel.js';
import { hl7v2MllpConfigSchema, hl7v2MllpDestination } from '../../src/connectors/destinations/hl7v2-mllp.js';
import { createConnectorRegistry } from '../../src/connectors/registry.js';
import type { DestinationInstance } from '../../src/connectors/types.js';
import { canonicalMessageSchema, type CanonicalMessage } from '../../src/core/canonical-message.js';
import { createLogger } from '../../src/core/logger.js';
import { controlIdFor } from '../../src/hl7/control-id.js';
import { compileMapping, loadMapping } from '../../src/mapping/jsonata-mapping.js';
import { repoRoot } from '../support/gateway.js';

const require = createRequire(import.meta.url);
const Redox = require('@redoxengine/redox-hl7-v2') as { Parser: new () => { parse(t: string): Record<string, unknown> } };
const logger = createLogger({ level: 'silent' });

function message(over: Partial<Record<keyof CanonicalMessage, unknown>> = {}): CanonicalMessage {
  return canonicalMessageSchema.parse({
    schema_version: 1,
    source: { kind: 'whatsapp_cloud', account_id: '102290129340398', endpoint_id: '106540352242922' },
    id: 'wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTJCM0Y0RTVENkM3QjhBOUMwRAA=',
    dedup_key: 'wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTJCM0Y0RTVENkM3QjhBOUMwRAA=',
    kind: 'text',
    sent_at: '2025-03-04T09:15:00Z',
    received_at: '2025-03-04T09:15:02Z',
    sender: { phone: '+15551234567', platform_id: '15551234567', display_name: 'Jane Demo' },
    conversation_id: '15551234567',
    text: 'Are my blood test results back?\nThanks | Jane 😀',
    ...over,
  });
}

async function destination(file: string, extra: Record<string, unknown> = {}): Promise<DestinationInstance> {
  const mapping = await loadMapping(path.join(repoRoot, 'mappings', file));
  const config = hl7v2MllpConfigSchema.parse({ kind: 'hl7v2_mllp', name: 'partner', mapping: file, url: 'mllp://127.0.0.1:9', ...extra });
  return hl7v2MllpDestination.create(config, { channelId: 'whatsapp-care-routing', logger, mapping });
}

async function render(d: DestinationInstance, msg: CanonicalMessage): Promise<string | undefined> {
  const out = await d.render(msg, { now: new Date(msg.received_at), bindings: {}, deliveryId: 'delivery-1' });
  expect(out.contentType).toBe('x-application/hl7-v2+er7');
  return out.dropped ? undefined : (out.body as string);
}

describe('lab-question-to-orm.jsonata', () => {
  let d: DestinationInstance;
  beforeAll(async () => {
    d = await destination('lab-question-to-orm.jsonata', { sending_facility: 'CLINIC', receiving_application: 'LIS', receiving_facility: 'LAB' });
  });

  it('builds an ORM^O01 with the chat text in NTE-3 and the sender in PID', async () => {
    const er7 = (await render(d, message()))!;
    const m = Hl7Message.parse(er7);
    expect(m.segments.map((s) => s.name).filter(Boolean)).toEqual(['MSH', 'PID', 'ORC', 'OBR', 'NTE']);
    expect(m.header.getField(9).toString()).toBe('ORM^O01^ORM_O01');
    expect(m.header.getField(10).toString()).toBe(controlIdFor('delivery-1'));
    const pid = m.getSegment('PID')!;
    expect(pid.getField(3).toString()).toBe('15551234567^^^WHATSAPP&https://switchboard.example/sid/whatsapp-user&URI^PT');
    expect(pid.getField(5).toString()).toBe('Jane Demo^^^^^^D');
    expect(pid.getField(13).toString()).toBe('+15551234567^PRN^CP^^^^^^^^^+15551234567');
    const orc = m.getSegment('ORC')!;
    expect(orc.getField(1).toString()).toBe('NW');
    expect(orc.getField(2).toString()).toBe(`${controlIdFor('delivery-1')}^SWITCHBOARD`);
    expect(m.getSegment('OBR')!.getField(4).toString()).toBe('SB-QUESTION^Patient question about a lab order^L');
    expect(m.getSegment('OBR')!.getField(7).toString()).toBe('20250304091500+0000');
    expect(m.getSegment('NTE')!.toString()).toBe('NTE|1|P|Are my blood test results back?\\.br\\Thanks \\F\\ Jane 😀');
    expect(new Redox.Parser().parse(er7)).toHaveProperty('ORDER');
  });

  it('uses the business-scoped id and UNKNOWN name when that is all there is, and a caption when there is no text', async () => {
    const er7 = (await render(d, message({ kind: 'image', text: undefined, sender: { user_id: 'US.13491208655302741918' }, media: [{ kind: 'image', caption: 'my lab slip' }] })))!;
    const pid = Hl7Message.parse(er7).getSegment('PID')!;
    expect(pid.getField(3).getComponent(1)).toBe('US.13491208655302741918');
    expect(pid.getField(5).toString()).toBe('UNKNOWN^^^^^^U');
    expect(pid.fields).toHaveLength(6); // PID-13 absent: no phone, no trailing delimiters
    expect(er7).toContain('\rNTE|1|P|my lab slip\r');
  });

  it('drops a message with nothing to ask (a sticker)', async () => {
    expect(await render(d, message({ kind: 'sticker', text: undefined, media: [{ kind: 'sticker' }] }))).toBeUndefined();
  });

  it('renders the same bytes for the same delivery (retries resend the same message)', async () => {
    expect(await render(d, message())).toBe(await render(d, message()));
  });
});

describe('note-to-mdm.jsonata', () => {
  it('builds an MDM^T02 (EVN PID PV1 TXA OBX) with one OBX-5 repetition per line', async () => {
    const d = await destination('note-to-mdm.jsonata');
    const er7 = (await render(d, message()))!;
    const m = Hl7Message.parse(er7);
    expect(m.segments.map((s) => s.name).filter(Boolean)).toEqual(['MSH', 'EVN', 'PID', 'PV1', 'TXA', 'OBX']);
    expect(m.getSegment('EVN')!.getField(2).toString()).toBe('20250304091502+0000');
    expect(m.getSegment('PV1')!.getField(2).toString()).toBe('N');
    const txa = m.getSegment('TXA')!;
    expect([1, 2, 3, 17].map((n) => txa.getField(n).toString())).toEqual(['1', 'PN', 'TX', 'DO']);
    expect(txa.getField(12).getComponent(1)).toBe('wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTJCM0Y0RTVENkM3QjhBOUMwRAA=');
    const obx = m.getSegment('OBX')!;
    expect(obx.getField(2).toString()).toBe('TX');
    expect(obx.getField(5).toString()).toBe('Are my blood test results back?~Thanks \\F\\ Jane 😀');
    expect(obx.getField(11).toString()).toBe('F');
    expect(new Redox.Parser().parse(er7)).toHaveProperty('TXA');
  });
});

describe('authorization-to-rqa.jsonata', () => {
  it('builds an RQA^I08 with PRD RP/RT, PID and the text in OBR + NTE (not a root NTE)', async () => {
    const d = await destination('authorization-to-rqa.jsonata');
    const er7 = (await render(d, message({ text: 'Do I need prior auth for the MRI?' })))!;
    const m = Hl7Message.parse(er7);
    expect(m.segments.map((s) => s.name).filter(Boolean)).toEqual(['MSH', 'PRD', 'PRD', 'PID', 'OBR', 'NTE']);
    expect(m.getAllSegments('PRD').map((s) => s.getField(1).toString())).toEqual(['RP', 'RT']);
    expect(m.getSegment('NTE')!.getField(3).toString()).toBe('Do I need prior auth for the MRI?');
    const json = new Redox.Parser().parse(er7) as { OBSERVATION: { NTE: unknown[] }[] };
    expect(json.OBSERVATION[0]!.NTE).toHaveLength(1);
  });
});

describe('channels/whatsapp-care-routing.yaml', () => {
  const env = {
    WHATSAPP_APP_SECRET: 'secret',
    WHATSAPP_VERIFY_TOKEN: 'token',
    FHIR_BASE_URL: 'http://127.0.0.1:9/fhir/R4',
    LAB_MLLP_URL: 'mllp://127.0.0.1:2575',
    INSURER_MLLP_URL: 'mllps://insurer.example.org:6661',
  };

  it('loads with the hl7v2_mllp destinations and its own webhook path', async () => {
    const channel = await loadChannelFile(path.join(repoRoot, 'channels', 'whatsapp-care-routing.yaml'), { registry: createConnectorRegistry(), env });
    expect(channel.id).toBe('whatsapp-care-routing');
    expect(channel.config.source).toMatchObject({ kind: 'whatsapp_cloud', path: '/webhooks/whatsapp-care-routing' });
    expect(channel.config.destinations.map((d) => [d.name, d.kind])).toEqual([
      ['ehr', 'fhir_r4'],
      ['lab', 'hl7v2_mllp'],
      ['insurer', 'hl7v2_mllp'],
    ]);
    expect(channel.config.destinations[1]).toMatchObject({ url: 'mllp://127.0.0.1:2575', concurrency: 1, ack_timeout_ms: 30000, charset: 'UNICODE UTF-8' });
  });

  it('routes menu choices and keywords: lab, insurer, both or neither (the EHR takes all)', async () => {
    const channel = await loadChannelFile(path.join(repoRoot, 'channels', 'whatsapp-care-routing.yaml'), { registry: createConnectorRegistry(), env });
    const when = Object.fromEntries(
      channel.config.destinations.filter((d) => d.when).map((d) => [d.name, compileMapping(`${d.name}.when`, d.when!)]),
    );
    expect(channel.config.destinations.find((d) => d.name === 'ehr')!.when).toBeUndefined();
    const routes = async (m: CanonicalMessage): Promise<string[]> => {
      const out: string[] = [];
      for (const [name, expr] of Object.entries(when)) if (await expr.evaluate(m, { now: new Date() })) out.push(name);
      return out;
    };
    const menu = (id: string, title: string) => message({ kind: 'interactive', text: title, interactive: { type: 'list_reply', id, title } });
    expect(await routes(menu('lab', 'Lab questions'))).toEqual(['lab']);
    expect(await routes(menu('insurance', 'Insurance'))).toEqual(['insurer']);
    expect(await routes(message({ kind: 'button', text: 'Lab', interactive: { type: 'quick_reply', payload: 'lab', title: 'Lab' } }))).toEqual(['lab']);
    expect(await routes(message({ text: 'When is my blood test?' }))).toEqual(['lab']);
    expect(await routes(message({ text: 'Are my RESULTS ready?' }))).toEqual(['lab']);
    expect(await routes(message({ text: 'Does my insurance need prior auth?' }))).toEqual(['insurer']);
    expect(await routes(message({ text: 'Is the authorisation for my lab work done?' }))).toEqual(['lab', 'insurer']);
    expect(await routes(message({ text: 'Can I reschedule my appointment?' }))).toEqual([]);
    expect(await routes(message({ text: 'The label on the bottle is torn' }))).toEqual([]);
    expect(await routes(message({ kind: 'sticker', text: undefined, media: [{ kind: 'sticker' }] }))).toEqual([]);
  });
});
