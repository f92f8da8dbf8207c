import { Argument, Command, CommanderError, Option } from 'commander';
import { CliError } from './CliError.js';
import { benches, type BenchName } from './BenchCommand.js';

/**
 * The `mcu` command. Only commander and this file load for `--help`; a command's module (and with
 * it the node, NATS or HTTP client code) is imported when that command runs.
 */

const examples = (...lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;

const nodeEnvironment = `
Settings come from flags, then environment variables, then the config file (--config or
MCU_CONFIG, JSON or YAML, camelCase keys: port, host, publicUrl, rtcPorts, logLevel, …).
Environment: MCU_HOST (or HOST), MCU_PORT (or PORT), MCU_PUBLIC_URL, MCU_PUBLIC_IP, MCU_RTC_PORTS,
  MCU_TLS_CERT, MCU_TLS_KEY, MCU_LOG_LEVEL, MCU_DRAIN_TIMEOUT_MS, MCU_RESTREAM_ALLOW, MCU_CONFIG, MCU_ADMIN_TOKEN (admin bearer token; generated and printed when
  unset), MCU_TOKEN_SECRET (HMAC secret for event tokens, ≥ 32 characters; random per start when
  unset, required by mixer and relay: every node of a cluster needs the same one).`;

const clusterEnvironment = `Cluster environment: MCU_NATS, MCU_CLUSTER, MCU_NODE_ID, MCU_NATS_CREDS, MCU_NATS_USER,
  MCU_NATS_PASS, MCU_NATS_TOKEN, MCU_NATS_TLS_CA, MCU_NATS_TLS_CERT, MCU_NATS_TLS_KEY,
  MCU_MEDIA_IP, MCU_FAN_OUT, MCU_RELAYS.`;

function common(cmd: Command, json: string): Command {
  return cmd
    .option('--config <file>', 'config file, JSON or YAML (env MCU_CONFIG)')
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent (env MCU_LOG_LEVEL, default info)')
    .option('--json', json);
}

function nodeOptions(cmd: Command): Command {
  return cmd
    .option('--host <addr>', 'address to listen on (env MCU_HOST or HOST, default 127.0.0.1)')
    .option('--port <n>', 'HTTP port, 0 for any free one (env MCU_PORT or PORT, default 8080; relay: 0)')
    .option('--public-url <url>', 'base of the URLs handed out (env MCU_PUBLIC_URL, default http://host:port, https:// with --tls-cert)')
    .option('--drain-timeout-ms <ms>', 'on SIGTERM, how long to drain viewers and events before exiting (env MCU_DRAIN_TIMEOUT_MS, default 25000)')
    .option('--public-ip <addr>', 'address advertised for RTP and ICE host candidates behind 1:1 NAT (env MCU_PUBLIC_IP)')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (chain); a renewed file is picked up without a restart (env MCU_TLS_CERT)')
    .option('--tls-key <file>', 'the PEM private key of --tls-cert (env MCU_TLS_KEY)')
    .option('--rtc-ports <a-b>', 'UDP port range for WebRTC ICE, e.g. 40000-40999 (env MCU_RTC_PORTS, default any ephemeral port)')
    .option('--rtc-port <n>', 'one UDP port for every WebRTC session, e.g. 40000 (env MCU_RTC_PORT; takes precedence over --rtc-ports)');
}

function restreamOptions(cmd: Command): Command {
  return cmd.option('--restream-allow <list>', 'ingests restreams may connect to: public (any public address), host[:port], *.domain[:port], ip[:port], cidr[:port], comma-separated (env MCU_RESTREAM_ALLOW, default public: loopback, private and link-local refused)');
}

function clusterOptions(cmd: Command): Command {
  return cmd
    .option('--nats <url,…>', 'NATS server(s) (env MCU_NATS, default nats://127.0.0.1:4222)')
    .option('--cluster <name>', 'cluster name, subjects mcu.<name>.… (env MCU_CLUSTER, default "default")')
    .option('--node-id <id>', "this node's id (env MCU_NODE_ID, default <role>-<host>-<random>)")
    .option('--creds <file>', 'NATS credentials file, JWT + nkey (env MCU_NATS_CREDS)')
    .option('--nats-user <user>', 'NATS user (env MCU_NATS_USER)')
    .option('--nats-pass <password>', 'NATS password (env MCU_NATS_PASS)')
    .option('--nats-token <token>', 'NATS token (env MCU_NATS_TOKEN)')
    .option('--nats-tls-ca <file>', 'CA for NATS over TLS (env MCU_NATS_TLS_CA)')
    .option('--nats-tls-cert <file>', 'client certificate for NATS over TLS (env MCU_NATS_TLS_CERT)')
    .option('--nats-tls-key <file>', 'client key for NATS over TLS (env MCU_NATS_TLS_KEY)')
    .option('--media-ip <addr>', 'address other nodes send/receive the program feed at (env MCU_MEDIA_IP; default the listen address, or this machine\'s IPv4 on 0.0.0.0)');
}

function clientOptions(cmd: Command): Command {
  return common(cmd, 'print the API answer as JSON')
    .option('--url <url>', 'the node (env MCU_URL, default http://127.0.0.1:8080)')
    .option('--token <token>', "bearer token: the admin token or the event's producer token (env MCU_TOKEN, then MCU_ADMIN_TOKEN)");
}

type Flags = Record<string, unknown>;
/** Settings are resolved before the node's code loads: a bad value fails fast and starts nothing. */
async function runNode(command: 'up' | 'mixer' | 'relay' | 'cluster', flags: Flags): Promise<void> {
  const { resolveConfig } = await import('./Config.js');
  const resolved = await resolveConfig(flags);
  const commands = await import('./NodeCommands.js');
  await commands[command]({ ...resolved, json: flags.json === true });
}
const eventCommands = () => import('./EventCommands.js');

const program = new Command('mcu')
  .description('Cascading MCU: run a node or a cluster, manage events over the HTTP API, run the benchmarks.')
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(`mcu: ${text.replace(/^error: /, '')}`) })
  .showHelpAfterError('(add --help for usage and examples)')
  .addHelpText(
    'after',
    examples(
      'mcu up                                    # all-in-one node on http://127.0.0.1:8080',
      'mcu event create "Town hall" --max-speakers 4',
      'MCU_TOKEN_SECRET=… mcu mixer --nats nats://10.0.0.5:4222 --cluster prod',
      'mcu cluster --relays 3',
      'mcu bench mix -- --json',
      'mcu <command> --help                      # options, environment and examples of one command',
    ),
  );

restreamOptions(nodeOptions(common(program.command('up'), 'print the URLs and the admin token as one JSON line')))
  .description('run the all-in-one node (mixer + HTTP API) in one process, no NATS needed')
  .addHelpText('after', `${nodeEnvironment}\n${examples('mcu up', 'mcu up --host 0.0.0.0 --port 8080 --public-ip 203.0.113.7 --rtc-ports 40000-40999', 'mcu up --host 0.0.0.0 --port 443 --tls-cert /etc/mcu/tls/cert.pem --tls-key /etc/mcu/tls/key.pem --public-url https://mcu.example.com', 'MCU_PORT=9000 mcu up --config mcu.yaml --json', 'mcu up --restream-allow public,127.0.0.1:1935,rtmp.internal.example.com')}`)
  .action((flags: Flags) => runNode('up', flags));

restreamOptions(clusterOptions(nodeOptions(common(program.command('mixer'), 'print the URLs and the admin token as one JSON line'))))
  .option('--fan-out <n>', 'children per parent in the relay tree (env MCU_FAN_OUT, default 8)')
  .option('--feed-key-rotation-ms <ms>', "how often each event's feed key is replaced (env MCU_FEED_KEY_ROTATION_MS, default 600000)")
  .description('run a mixer node of a cluster (HTTP API, mixing, relay tree controller; viewers go to relays)')
  .addHelpText('after', `${nodeEnvironment}\n${clusterEnvironment}\n${examples('MCU_TOKEN_SECRET=… mcu mixer --nats nats://10.0.0.5:4222 --cluster prod --nats-tls-ca ca.pem', 'mcu mixer --config /etc/mcu/mixer.yaml --fan-out 4')}`)
  .action((flags: Flags) => runNode('mixer', flags));

clusterOptions(nodeOptions(common(program.command('relay'), 'print the URLs as one JSON line')))
  .description('run a relay node of a cluster (receives the program feed, forwards it, serves WHEP viewers)')
  .addHelpText('after', `${nodeEnvironment}\n${clusterEnvironment}\n${examples('MCU_TOKEN_SECRET=… mcu relay --nats nats://10.0.0.5:4222 --cluster prod --public-ip 203.0.113.8 --rtc-ports 40000-40999')}`)
  .action((flags: Flags) => runNode('relay', flags));

restreamOptions(clusterOptions(nodeOptions(common(program.command('cluster'), 'print the mixer and relay URLs and the admin token as one JSON line once all are up'))))
  .option('--relays <n>', 'relay processes to start, 0–64 (env MCU_RELAYS, default 2)')
  .option('--mixers <n>', 'mixer processes to start, 1–16: each event is held by one, another takes it over if it dies (env MCU_MIXERS, default 1)')
  .option('--fan-out <n>', 'children per parent in the relay tree (env MCU_FAN_OUT, default 8)')
  .option('--feed-key-rotation-ms <ms>', "how often each event's feed key is replaced (env MCU_FEED_KEY_ROTATION_MS, default 600000)")
  .description('start M mixers and N relay processes on this machine over NATS (generated secret and admin token) and print their URLs')
  .addHelpText('after', `${nodeEnvironment}\n${clusterEnvironment}\n${examples('mcu cluster --relays 3', 'mcu cluster --mixers 2 --relays 3', 'mcu cluster --relays 2 --nats nats://127.0.0.1:4222 --cluster demo --json')}`)
  .action((flags: Flags) => runNode('cluster', flags));

const event = program
  .command('event')
  .description("manage events through a node's HTTP API (create, list, show, end, layout, mute, stage, kick, hands, invite)")
  .addHelpText('after', examples('export MCU_URL=http://127.0.0.1:8080 MCU_TOKEN=<admin token>', 'mcu event create "Town hall"', 'mcu event list --json'));

clientOptions(event.command('create'))
  .argument('[name]', 'a name for the event')
  .option('--max-speakers <n>', 'speakers mixed at once, 1–16 (default: the node\'s, 3)')
  .option('--presenters-join <stage>', 'where presenters join: live (on air at once, the default) or backstage (until the producer puts them live)')
  .description('create an event; prints its id, WHIP and WHEP URLs, the producer, presenter and viewer tokens, and how to set up OBS')
  .addHelpText('after', examples('mcu event create "Town hall" --max-speakers 4', 'mcu event create --url https://mcu.example.com --token "$ADMIN" --json | jq -r .tokens.presenter'))
  .action(async (name: string | undefined, flags: Flags) => (await eventCommands()).create(name, flags));

clientOptions(event.command('list'))
  .description('list the events of the node (a producer token sees its own event)')
  .addHelpText('after', examples('mcu event list', 'mcu event list --json | jq -r ".events[].id"'))
  .action(async (flags: Flags) => (await eventCommands()).list(flags));

clientOptions(event.command('show'))
  .argument('<event>', 'event id')
  .description('show an event: layout, speakers, URLs and its participants')
  .addHelpText('after', examples('mcu event show 3f2a9c', 'mcu event show 3f2a9c --json'))
  .action(async (id: string, flags: Flags) => (await eventCommands()).show(id, flags));

clientOptions(event.command('move'))
  .argument('<event>', 'event id')
  .option('--to <mixer>', 'node id of the mixer to move it to (default: the least-loaded other mixer)')
  .description('hand an event to another mixer of the cluster, make-before-break: presenters re-publish to it, viewers on relays stay')
  .addHelpText('after', examples('mcu event move 3f2a9c', 'mcu event move 3f2a9c --to mixer-b --json'))
  .action(async (id: string, flags: Flags) => (await eventCommands()).move(id, flags));

clientOptions(event.command('end'))
  .argument('<event>', 'event id')
  .description('end an event: every presenter and viewer is disconnected')
  .addHelpText('after', examples('mcu event end 3f2a9c'))
  .action(async (id: string, flags: Flags) => (await eventCommands()).end(id, flags));

clientOptions(event.command('layout'))
  .argument('<event>', 'event id')
  .addArgument(new Argument('<kind>', 'layout of the program video').choices(['grid', 'speaker', 'presentation', 'custom']))
  .option('--source <participant>', 'presentation: the participant shown large')
  .option('--regions <json>', 'custom: JSON array of {sourceId, x, y, width, height}, fractions of the canvas')
  .description('switch the video layout of an event (takes effect on the next frame)')
  .addHelpText(
    'after',
    examples(
      'mcu event layout 3f2a9c grid',
      'mcu event layout 3f2a9c presentation --source p-7d1e',
      'mcu event layout 3f2a9c custom --regions \'[{"sourceId":"p1","x":0,"y":0,"width":0.5,"height":1},{"sourceId":"p2","x":0.5,"y":0,"width":0.5,"height":1}]\'',
    ),
  )
  .action(async (id: string, kind: 'grid' | 'speaker' | 'presentation' | 'custom', flags: Flags) => (await eventCommands()).layout(id, kind, flags));

clientOptions(event.command('mute'))
  .argument('<event>', 'event id')
  .argument('<participant>', 'participant id (see mcu event show)')
  .option('--off', 'unmute instead')
  .description('mute a participant: out of speaker selection and every mix until unmuted')
  .addHelpText('after', examples('mcu event mute 3f2a9c p-7d1e', 'mcu event mute 3f2a9c p-7d1e --off'))
  .action(async (id: string, participant: string, flags: Flags) => (await eventCommands()).mute(id, participant, flags));

clientOptions(event.command('stage'))
  .argument('<event>', 'event id')
  .argument('<participant>', 'participant id (see mcu event show)')
  .addArgument(new Argument('<stage>', 'live: in the program and the composite; backstage: hears the program, in no mix').choices(['live', 'backstage']))
  .description('put a presenter on air or take it backstage (from the next audio tick and video frame, no renegotiation)')
  .addHelpText('after', examples('mcu event stage 3f2a9c p-7d1e live', 'mcu event stage 3f2a9c p-7d1e backstage --json'))
  .action(async (id: string, participant: string, where: 'live' | 'backstage', flags: Flags) => (await eventCommands()).stage(id, participant, where, flags));

clientOptions(event.command('kick'))
  .argument('<event>', 'event id')
  .argument('<participant>', 'participant id (see mcu event show)')
  .description('remove a participant from an event (its WebRTC session or RTP socket is closed)')
  .addHelpText('after', examples('mcu event kick 3f2a9c p-7d1e'))
  .action(async (id: string, participant: string, flags: Flags) => (await eventCommands()).kick(id, participant, flags));

const handCommands = () => import('./HandCommands.js');

clientOptions(event.command('hands'))
  .argument('<event>', 'event id')
  .description("list an event's raised hands in the order they were raised: hand id, viewer's name, state (raised, invited, on stage), waiting time")
  .addHelpText('after', examples('mcu event hands 3f2a9c', 'mcu event hands 3f2a9c --json | jq -r ".hands[0].id"'))
  .action(async (id: string, flags: Flags) => (await handCommands()).hands(id, flags));

clientOptions(event.command('invite'))
  .argument('<event>', 'event id')
  .argument('<hand>', 'hand id (see mcu event hands)')
  .addOption(new Option('--stage <stage>', 'where the guest joins: backstage (the default: check it, then mcu event stage … live) or live').choices(['live', 'backstage']))
  .description("invite a raised hand on stage: the viewer's page gets a single-use presenter grant and joins with its camera and microphone")
  .addHelpText('after', examples('mcu event invite 3f2a9c 7pQm1xZ0aK3vT9bW2cYd4e', 'mcu event invite 3f2a9c 7pQm1xZ0aK3vT9bW2cYd4e --stage live --json'))
  .action(async (id: string, hand: string, flags: Flags) => (await handCommands()).invite(id, hand, flags));

const restreamCommands = () => import('./RestreamCommands.js');
const restream = program
  .command('restream')
  .description("push an event's program to YouTube, Twitch or any RTMP server (start, stop, list); the URL with its stream key is read from a file or stdin, never argv")
  .addHelpText('after', examples('mcu restream start 3f2a9c --url-file youtube.url', 'mcu restream list 3f2a9c'));

clientOptions(restream.command('start'))
  .argument('<event>', 'event id')
  .option('--url-file <file>', 'file whose first line is the ingest URL rtmp[s]://host/app/streamKey ("-" or omitted: stdin)')
  .description('start pushing the program (H.264 copied, the mix as AAC) to an RTMP(S) ingest; the stream key stays off the command line')
  .addHelpText(
    'after',
    examples(
      'mcu restream start 3f2a9c --url-file youtube.url        # youtube.url: rtmp://a.rtmp.youtube.com/live2/<key>',
      "pass show twitch/ingest | mcu restream start 3f2a9c     # stdin",
      'mcu restream start 3f2a9c --url-file twitch.url --json',
    ),
  )
  .action(async (id: string, flags: Flags) => (await restreamCommands()).start(id, flags));

clientOptions(restream.command('list'))
  .argument('<event>', 'event id')
  .description("list an event's restreams: state (connecting, live, retrying, failed), bytes sent, reconnects; URLs with the key masked")
  .addHelpText('after', examples('mcu restream list 3f2a9c', 'mcu restream list 3f2a9c --json | jq ".restreams[] | {id, state}"'))
  .action(async (id: string, flags: Flags) => (await restreamCommands()).list(id, flags));

clientOptions(restream.command('stop'))
  .argument('<event>', 'event id')
  .argument('[restream]', 'restream id (see mcu restream list); all of the event\'s when omitted')
  .description('stop a restream (or all of an event\'s): ffmpeg stops, the RTMP connection closes')
  .addHelpText('after', examples('mcu restream stop 3f2a9c r7Kq2', 'mcu restream stop 3f2a9c'))
  .action(async (id: string, rid: string | undefined, flags: Flags) => (await restreamCommands()).stop(id, rid, flags));
const recordingCommands = () => import('./RecordingCommands.js');
const recording = program
  .command('recording')
  .description("record an event's program, encrypted to your age key; list, stop, download and verify recordings")
  .addHelpText('after', examples('age-keygen -o key.txt   # keep key.txt; age-keygen -y key.txt prints the recipient', 'mcu recording start 3f2a9c --recipient age1…', 'mcu recording download 3f2a9c --identity key.txt --out ./town-hall'));

clientOptions(recording.command('start'))
  .argument('<event>', 'event id')
  .option('--recipient <age1…>', 'an age X25519 recipient (age-keygen -y key.txt); repeat for several; default: the node\'s recordingRecipients', (v: string, prev: string[] = []) => [...prev, v])
  .option('--rendition <id>', 'the program rendition recorded (default: the largest)')
  .option('--audio-only', 'record the program audio only')
  .option('--segment-minutes <n>', 'length of each segment file (default 10)')
  .description('start recording the program of an event; each segment is encrypted to the recipients as it is written')
  .addHelpText('after', examples('mcu recording start 3f2a9c --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p', 'mcu recording start 3f2a9c --recipient "$(age-keygen -y key.txt)" --audio-only --json'))
  .action(async (id: string, flags: Flags) => (await recordingCommands()).start(id, flags));

clientOptions(recording.command('stop'))
  .argument('<event>', 'event id')
  .argument('<recording>', 'recording id (see mcu recording list)')
  .description('stop a recording: its last segment is closed and the manifest made final')
  .addHelpText('after', examples('mcu recording stop 3f2a9c 6c1d…'))
  .action(async (id: string, rid: string, flags: Flags) => (await recordingCommands()).stop(id, rid, flags));

clientOptions(recording.command('list'))
  .argument('<event>', 'event id')
  .description('list the recordings of an event (also after it ended): state, duration, size, segments')
  .addHelpText('after', examples('mcu recording list 3f2a9c', 'mcu recording list 3f2a9c --json'))
  .action(async (id: string, flags: Flags) => (await recordingCommands()).list(id, flags));

clientOptions(recording.command('download'))
  .argument('<event>', 'event id')
  .argument('[recording]', 'recording id (default: the latest)')
  .option('--out <dir>', 'directory to write to (default: ./<recording id>)')
  .option('--identity <file>', 'your age identity file (age-keygen): decrypt and join the segments into one playable file')
  .description('download a recording: the encrypted segments as stored, or with --identity one decrypted, playable file')
  .addHelpText('after', examples('mcu recording download 3f2a9c --identity key.txt --out ./town-hall', 'mcu recording download 3f2a9c 6c1d… --out ./encrypted'))
  .action(async (id: string, rid: string | undefined, flags: Flags) => (await recordingCommands()).download(id, rid, flags));

clientOptions(recording.command('verify'))
  .argument('<event>', 'event id')
  .argument('[recording]', 'recording id (default: the latest)')
  .option('--identity <file>', 'your age identity file: also check the chain inside the segments and the manifest\'s MAC')
  .description('check that every segment is stored as the manifest says (a removed or swapped segment fails); exit 1 on a problem')
  .addHelpText('after', examples('mcu recording verify 3f2a9c', 'mcu recording verify 3f2a9c 6c1d… --identity key.txt --json'))
  .action(async (id: string, rid: string | undefined, flags: Flags) => (await recordingCommands()).verify(id, rid, flags));

const bench = program
  .command('bench')
  .description('run a benchmark (bench/*.ts under tsx, as npm run bench:<name> does); arguments after the name go to it, exit code kept')
  .addHelpText('after', examples('mcu bench mix', 'mcu bench tree -- --viewers 1000 --relays 6 --json'));

for (const [name, b] of Object.entries(benches)) {
  bench
    .command(name)
    .description(b.description)
    .argument('[args...]', `arguments for bench/${b.file} (put them after -- so that --help and the like reach it)`)
    .allowUnknownOption()
    .helpOption('-h, --help', 'show this help (mcu bench <name> -- --help passes it on)')
    .addHelpText('after', examples(b.example))
    .action(async (args: string[]) => {
      const { runBench } = await import('./BenchCommand.js');
      process.exitCode = await runBench(name as BenchName, args);
    });
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version exit 0; a usage error exits 2, like a bad setting.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (err instanceof CliError) {
    process.stderr.write(`mcu: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else {
    throw err;
  }
}
