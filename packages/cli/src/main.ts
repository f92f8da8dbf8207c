import { parseArgs } from 'node:util';
import { McuNode } from '@mcu/server';

const USAGE = `Usage: mcu <command> [options]

Commands:
  up        run the all-in-one node (mixer + HTTP API) on one process

Options for "up":
  --host <addr>        address to listen on            (env HOST, default 127.0.0.1)
  --port <n>           HTTP port                        (env PORT, default 8080)
  --public-url <url>   base of the URLs handed out      (env MCU_PUBLIC_URL)
  --public-ip <addr>   address advertised for RTP and ICE host candidates (1:1 NAT) (env MCU_PUBLIC_IP)
  --rtc-ports <a-b>    UDP port range for WebRTC ICE   (env MCU_RTC_PORTS, default: any ephemeral port)
  -h, --help           show this help

Environment:
  MCU_ADMIN_TOKEN      admin bearer token (generated and printed when unset)
  MCU_TOKEN_SECRET     HMAC secret for event tokens, ≥ 32 chars (random per start when unset)

Examples:
  npm start
  mcu up --host 0.0.0.0 --port 8080 --public-ip 203.0.113.7 --rtc-ports 40000-40999
`;

function fail(message: string): never {
  process.stderr.write(`mcu: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function portRange(value: string | undefined): [number, number] | undefined {
  if (value === undefined || value === '') return undefined;
  const m = /^(\d+)-(\d+)$/.exec(value);
  if (!m) fail(`rtc-ports: expected a range like 40000-40999, got "${value}"`);
  return [Number(m[1]), Number(m[2])];
}

function intOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) fail(`${name}: expected an integer, got "${value}"`);
  return n;
}

async function up(argv: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        'public-url': { type: 'string' },
        'public-ip': { type: 'string' },
        'rtc-ports': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const env = process.env;
  let node: McuNode;
  try {
    node = new McuNode({
      host: values.host ?? env.HOST ?? undefined,
      port: intOption('port', values.port ?? env.PORT),
      publicUrl: values['public-url'] ?? env.MCU_PUBLIC_URL,
      publicIp: values['public-ip'] ?? env.MCU_PUBLIC_IP,
      rtcPorts: portRange(values['rtc-ports'] ?? env.MCU_RTC_PORTS),
      adminToken: env.MCU_ADMIN_TOKEN || undefined,
      tokenSecret: env.MCU_TOKEN_SECRET || undefined,
    });
  } catch (err) {
    fail((err as Error).message);
  }
  const info = await node.listen();
  const lines = [
    `mcu: node up at ${info.url}`,
    `  API:        ${info.url}/api/events`,
    `  console:    ${info.url}/`,
    `  health:     ${info.url}/healthz`,
    info.adminTokenGenerated
      ? `  admin token (generated, shown once; set MCU_ADMIN_TOKEN to fix it): ${info.adminToken}`
      : '  admin token: from MCU_ADMIN_TOKEN',
    `  create an event: curl -X POST -H "Authorization: Bearer <admin token>" ${info.url}/api/events`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`mcu: ${signal}, stopping\n`);
    await node.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case 'up':
    await up(rest);
    break;
  case undefined:
  case '-h':
  case '--help':
  case 'help':
    process.stdout.write(USAGE);
    break;
  default:
    fail(`unknown command "${command}"`);
}
