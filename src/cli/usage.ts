/** Help texts of the commands, kept apart from the commands so that `--help` loads nothing heavy. */
import { gatewayOptionsUsage } from './gateway-client.js';

export const lintUsage = `Usage: switchboard lint [paths...] [options]

Checks channel files, mappings and test files without starting anything or touching the
network: YAML syntax, the channel schema and unknown keys, \${VAR} references, filters and
\`when\` routing, JSONata syntax (file:line:column), code tables, mappings a channel names but
that do not exist, mappings without a test file (warning), test files without a mapping.

Paths: files or folders (default: channels/ and mappings/).

Options:
  --format <text|json>  output format (default text: file:line:column: level: message)
  --env-file <file>     read variables from a .env file (repeatable; over the environment)
  --production          check as in production: no development defaults for unset variables
                        (also when SWITCHBOARD_ENV=production)
  --strict              warnings fail too (exit 1)
  --fixtures <dir>      folder of test-file fixtures (default: fixtures/ of the project)
  -h, --help            show this help

Environment variables: a variable the channels reference that is unset is an error, except
those the gateway fills in itself (in development: the documented development defaults,
e.g. WHATSAPP_APP_SECRET; always: FHIR_BASE_URL, the in-process FHIR sandbox); those are
listed as info. The summary lists every variable the channels need.

Exit codes: 0 no errors, 1 errors found (or warnings with --strict), 2 usage error.
`;

export const testUsage = `Usage: switchboard test [paths...] [options]

Runs test files: mappings/<name>.test.yaml beside mappings/<name>.jsonata (a mapping on
sample inputs) and channels/<name>.test.yaml beside channels/<name>.yaml (raw webhooks
through a whole channel, destinations captured). The format: docs/analyst-guide.md, "Test".

Paths: test files, mappings or channel files (their test file), or folders
(default: channels/ and mappings/).

Options:
  --update              rewrite equals_file golden files from the current output
  --filter <text>       run only cases whose name contains <text>
  --fixtures <dir>      folder of fixture: inputs (default: fixtures/ of the project)
  --env-file <file>     variables for \${VAR} in channel files (repeatable)
  --format <text|json>  output format (default text)
  -h, --help            show this help

Output: one line per case, failures as "✗ <name> [<test file>:<line>]: <reason>" with a
diff, then "N passed, N failed".
Exit codes: 0 all passed, 1 a case failed or a test file cannot run, 2 usage error.
`;

export const mapUsage = `Usage: switchboard map -m <mapping> -i <input> [options]
       switchboard map --channel <channel file> [--destination <name>] -i <input> [options]

Evaluates a mapping on one sample as the gateway would and prints the output.

The input is a canonical message (JSON or YAML with schema_version), or a raw webhook body:
a WhatsApp Cloud, Twilio or Rocket.Chat webhook is recognised by itself, any other needs
--source or --channel. When it cannot tell, map refuses (exit 2) and says which flag to give.

The output is checked for its destination: map looks for the channel destination that uses the
mapping (--channel, else the first file in channels/ or CHANNELS_DIR that names it) and renders
the message through it, with that destination's bindings ($identifier_system, $control_id, ...)
and checks (a FHIR R4 Communication, a built and re-parsed HL7 v2 message). Without a channel a
FHIR resource is checked against its resourceType; anything else is printed with a warning that
it was not validated. Problems name the mapping's file:line:column.

Options:
  -m, --mapping <file>    the .jsonata mapping (default with --channel: its destination's)
  -i, --input <file>      the sample: a canonical message, or a raw webhook
  --channel <file>        map for this channel: its source parses raw webhooks, its destination
                          that uses the mapping renders and checks the output
  --destination <name>    with --channel: which destination (when several could be meant)
  --source <kind>         the input is a raw webhook of this source kind (e.g. whatsapp_cloud)
  --message <n>           which message of a raw webhook that holds several (0-based)
  --now <iso>             the mapping clock for $now() and $millis() (default: now)
  --binding <name=json>   a $name variable, e.g. --binding 'patient={"reference":"Patient/1"}'
                          (repeatable; a value that is not JSON is a string)
  --fhir <type>           check the output as a FHIR R4 resource of this type (no channel lookup)
  --hl7 <type>            check the output as ER7 text of this HL7 v2 type, e.g. ORM^O01 (no channel lookup)
  -w, --watch             re-run whenever the mapping, the input, the channel or a code table is saved
  -h, --help              show this help

Exit codes: 0 valid output printed (or the mapping drops the message), 1 the mapping failed or
the output is invalid, 2 usage error (including an input it cannot tell apart).
In --watch mode it runs until interrupted (Ctrl-C).
`;

export const validateUsage = `Usage: switchboard validate [channels-dir] [options]

Checks everything the gateway checks at start, in layers, stopping at the first that fails:
  1. lint: channel files, mappings and test files (as \`switchboard lint\`)
  2. build: every channel of the folder is loaded together (unique ids and webhook paths)
     and built: its source, filter, routing, destinations and compiled mappings
  3. with --environment: every destination's healthcheck, each within --timeout-ms, saying what
     it verified (e.g. GET /metadata of a FHIR server; an MLLP connection, plain or TLS)

channels-dir defaults to CHANNELS_DIR or channels/; mappings/ is linted too when it exists.

Options:
  --environment         also check reachability and auth of every destination (network)
  --timeout-ms <ms>     healthcheck time limit per destination (default 5000)
  --env-file <file>     read variables from a .env file (repeatable)
  --production          check as in production (no development defaults)
  --format <text|json>  output format (default text)
  -h, --help            show this help

Destinations whose address the gateway fills in itself (FHIR_BASE_URL unset: the in-process
sandbox) are skipped by --environment: there is nothing outside to reach.
Exit codes: 0 valid, 1 a layer failed, 2 usage error.
`;

export const docsUsage = `Usage: switchboard docs [--check]

Generates, from the code (run in the project folder):
  docs/reference/connectors.md       every source and destination option (from the zod schemas)
  docs/reference/functions.md        the mapping helper functions, with their tested examples
  schemas/channel.schema.json        JSON Schema of channel files (editor completion)
  schemas/mapping-test.schema.json   JSON Schema of mapping test files
  schemas/channel-test.schema.json   JSON Schema of channel test files
  docs/analyst-guide.md              its generated helper-function section

Options:
  --check     write nothing; exit 1 when a file is stale (CI)
  -h, --help  show this help

Exit codes: 0 written or up to date, 1 stale (--check), 2 usage error.
`;

export const dlqUsage = `Usage: switchboard dlq <list|show|replay|discard> [options]

Works on a running gateway's dead-letter queue through its admin API. Every view leads with the
reason in one line; for a mapping problem it starts with the mapping's file:line:column.

  dlq list [--channel C] [--destination D] [--code CODE] [--since ISO] [--until ISO] [--limit N]
  dlq show <delivery-id>                 the reason, every attempt and the server's answers
  dlq show <delivery-id> --output        the output that was refused (message content)
  dlq replay <delivery-id>... [--reason R] [--no-wait] [--timeout-ms MS]
                                         replay and wait for the new outcome (default up to 30 s):
                                         delivered, or dead-lettered again with the reason
  dlq replay <delivery-id>... --resend-uncertain --reason R
                                         OUTBOUND_SEND_UNCERTAIN only: send the message to the patient
                                         again although an earlier request may have reached them (audited)
  dlq replay --all [--channel C] [--destination D] [--code CODE] [--reason R]
                                         replay many (with progress, without waiting); the current
                                         mapping is used, and idempotency keys are kept (no duplicate
                                         Communication, same HL7 MSH-10)
  dlq discard <delivery-id>... --reason R

Options:
${gatewayOptionsUsage}
  --format <text|json>  output format (default text)
  -h, --help            show this help

Exit codes: 0 ok (replay: every replayed delivery was delivered or dropped), 1 something failed,
was not found, was dead-lettered again or was still pending when the wait ended, or no gateway or
no admin token was found, 2 usage.
`;

const storeAccessNote = `Works on the store directly: DATABASE_URL, else the embedded PostgreSQL under DATA_DIR
(the running gateway's, or started for the command), with the gateway's keys: ENCRYPTION_KEYS,
ENCRYPTION_KEYS_FILE, else DATA_DIR/encryption-keys.`;

export const auditUsage = `Usage: switchboard audit <verify|export> [options]

The audit trail (table audit_events): append-only, hash-chained, recorded by default.

  audit verify                 walk the chain; exit 0 when intact, 1 naming the first entry
                               that was altered, removed or inserted
  audit export [--since T] [--until T] [--format ndjson|fhir] [-o FILE]
                               entries recorded in [since, until), one JSON per line;
                               fhir: FHIR R4 AuditEvent resources (NDJSON). Audited itself.

T: a date (2025-01-31, UTC midnight) or an ISO 8601 date-time with a zone.
${storeAccessNote}

Exit codes: 0 ok, 1 chain broken (verify), 2 usage error.
`;

export const keysUsage = `Usage: switchboard keys <status|rotate|reencrypt> [options]

  keys status [--format text|json]   key-encryption keys, data keys, and how many stored values
                                     each data key protects (plaintext: rows from before encryption)
  keys rotate                        a new active data key; data keys re-wrapped under the newest
                                     ENCRYPTION_KEYS entry (put a new KEK first to rotate it)
  keys rotate --media-link           a new media link signing key; links signed with the previous
                                     one stay valid until they expire (MEDIA_LINK_TTL), keys
                                     retired longer ago are dropped
  keys reencrypt [--batch N]         rewrite every value not under the active key (and plaintext
                                     rows) online, N rows a batch (default 500), with progress;
                                     Ctrl-C stops after the batch, running it again resumes

${storeAccessNote}

Exit codes: 0 ok, 1 interrupted or values left, 2 usage error.
`;

export const storeUsage = `Usage: switchboard store prune [--dry-run]

Retention by dropping whole time partitions, never row by row:
- the audit trail's yearly partitions wholly older than AUDIT_RETENTION_YEARS (default 6), each
  drop recorded in the trail first (store.pruned, with the last removed entry's hash), so audit
  verify still passes;
- the message store's weekly partitions once their week is over (per-channel retention, default
  payloads 30d, metadata 365d). Messages with a pending or dead-lettered delivery, and events not
  yet ingested, are moved to a later week with their payloads first; rows whose metadata is kept
  longer are carried without their payloads; media files no message refers to any more are
  deleted. Each week is recorded as a store.pruned entry.

The gateway's worker role does the same on its own every STORE_PRUNE_INTERVAL (default 1h).

  --dry-run   show per table the partitions that would go (rows, size) and what is held back;
              change nothing (recorded as store.pruned with dry_run: true)

${storeAccessNote}

Exit codes: 0 ok, 2 usage error.
`;

export const tokensUsage = `Usage: switchboard tokens <create|list|revoke> [options]

Named API tokens: each is a principal with a role (viewer, operator, analyst, admin), named in
the audit trail and in delivery actions. Only a hash of the token is stored.

  tokens create --name <name> --role <role> [--expires <lifetime>]
                         prints the new token once, alone on stdout; lifetime e.g. 30m, 12h,
                         90d, 2w (default: no expiry)
  tokens list            every token: role, state, who created it, expiry, last use
  tokens revoke <name>   the token stops working at once (it stays listed as revoked)

By default through a running gateway's admin API (permission tokens.manage):
${gatewayOptionsUsage}
  --offline             work on the database instead (no gateway needed; e.g. the first token)
  --format <text|json>  output format (default text)
  -h, --help            show this help

With --offline: ${storeAccessNote.replace('Works on the store directly: ', '')}
Exit codes: 0 ok, 1 failed (name taken, no such token, gateway refused or unreachable, no admin
token), 2 usage error.
`;
