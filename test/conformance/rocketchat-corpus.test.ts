/** Conformance: the Rocket.Chat documentation's Omnichannel examples and REST history answer, each with a documented outcome. */
import { expect } from 'vitest';
import { pathToFileURL } from 'node:url';
import { describeConformance } from '../support/conformance-corpus.js';
import { runRocketChatTable, type Outcome } from '../support/rocketchat-outcomes.js';

const corpusTable: Record<string, Outcome> = {
  'docs-old_livechat_LivechatSession_example.json': {
    // The docs sample omits message _ids: stand-in ids, with an error saying so.
    kinds: ['text', 'text'],
    roles: ['patient', 'staff'],
    ignored: 1,
    check: (r, [visitor, agent]) => {
      expect(r.ignored[0]).toEqual({ what: 'LivechatSession event', reason: expect.stringContaining('session event') });
      expect(visitor).toMatchObject({ text: 'message content', sender: { username: 'visitor-username', display_name: 'visitor name', email: 'email@address.com' }, conversation_id: 'rocketchat:fasd6f5a4sd6f8a4sdf' });
      // "192873192873" has no +: not trusted as an E.164 number.
      expect(visitor?.sender.phone).toBeUndefined();
      expect(agent).toMatchObject({ text: 'message content from agent', sender: { platform_id: 'asdf89as6df8', username: 'agent.username', display_name: 'Agent Name' } });
      expect(visitor?.id).toMatch(/^unidentified:/);
      expect(visitor?.id).not.toBe(agent?.id);
      expect(visitor?.errors[0]?.title).toMatch(/no _id/);
    },
  },
  'docs-old_livechat_LivechatOfflineMessage_example.json': {
    kinds: ['text'],
    roles: ['patient'],
    check: (_r, [m]) => {
      expect(m).toMatchObject({
        text: 'message from the form',
        sent_at: '2016-06-01T19:55:53.867Z',
        sender: { display_name: 'name from the form', email: 'email@fromtheform.com' },
        conversation_id: 'rocketchat:offline:email@fromtheform.com',
      });
      expect(m?.id).toMatch(/^offline:[0-9a-f]{32}$/);
      expect(m?.errors).toEqual([]);
    },
  },
  // The REST history response is the poller's input, not a webhook body.
  'developer-docs_channels.history_response.json': { kinds: [], ignored: 1 },
};

describeConformance('conformance: Rocket.Chat documentation examples', 'rocketchat', (dir) => runRocketChatTable(pathToFileURL(`${dir}/`), corpusTable));
