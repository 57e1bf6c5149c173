// `flotilla certs init|issue`: a development CA and the certificates of nodes and clients it
// signs (docs/SECURITY.md, "TLS"). The certificates themselves are made by src/server/certs.ts;
// this is the command line around it. Certificates are loaded only when asked for: the rest of
// the command does not pay for the X.509 library.

import type { Command } from 'commander';

export function certsCommands(
  program: Command,
  int: (name: string, min?: number, max?: number) => (v: string) => number,
): void {
  const certs = program
    .command('certs')
    .description('make a development CA and the node and client certificates it signs');
  certs
    .command('init')
    .description('make a CA in DIR: ca.crt (give it to every node and client) and ca.key')
    .requiredOption('--dir <dir>', 'directory of the CA and the certificates it signs')
    .option('--days <n>', 'days the CA is valid', int('--days', 1, 36_500), 3_650)
    .option(
      '--name <name>',
      "the CA's common name, which refusals name as a certificate's issuer (default: Flotilla development CA and 8 random hex digits)",
    )
    .option('--force', 'replace a CA that exists (certificates it signed stop verifying)')
    .action(async (o: { dir: string; days: number; name?: string; force?: boolean }) => {
      const { initCa } = await import('../server/certs.js');
      const files = await initCa(o.dir, {
        days: o.days,
        force: o.force === true,
        ...(o.name === undefined ? {} : { commonName: o.name }),
      });
      process.stdout.write(`CA certificate ${files.certFile}\nCA key         ${files.keyFile}\n`);
    });
  certs
    .command('issue')
    .description(
      "issue NAME.crt and NAME.key in DIR, signed by DIR's CA: a node certificate (server and client) or, with --client, a client certificate",
    )
    .requiredOption('--dir <dir>', 'directory holding the CA (flotilla certs init)')
    .requiredOption('--name <name>', 'file name and common name, e.g. node1')
    .option(
      '--host <hosts>',
      'comma-separated IP addresses and DNS names the node is reached by (every address in --initial-cluster)',
      '',
    )
    .option('--client', 'a client certificate (clientAuth only; no hosts needed)')
    .option('--days <n>', 'days the certificate is valid', int('--days', 1, 36_500), 365)
    .option('--force', 'replace a certificate that exists')
    .action(
      async (o: {
        dir: string;
        name: string;
        host: string;
        client?: boolean;
        days: number;
        force?: boolean;
      }) => {
        const { issueCert } = await import('../server/certs.js');
        const files = await issueCert(o.dir, {
          name: o.name,
          hosts: o.host,
          client: o.client === true,
          days: o.days,
          force: o.force === true,
        });
        process.stdout.write(`certificate ${files.certFile}\nkey         ${files.keyFile}\n`);
      },
    );
}
