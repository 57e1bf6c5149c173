// The task board's server as a program:
//
//   node dist/examples/board/main.js --endpoints http://127.0.0.1:8101,http://127.0.0.1:8102
//     [--port 8100] [--host 127.0.0.1]        (or BOARD_ENDPOINTS, BOARD_PORT, BOARD_HOST)
//
// Port 0 picks a free port; the line "Board: <url>" on standard output says which. SIGINT or
// SIGTERM closes the page streams, the server and the client, and the process exits.

import { FlotillaClient } from 'flotilla/client';
import { Board } from './board.js';
import { BoardServer, parseOptions, type BoardServerOptions } from './server.js';

async function main(): Promise<void> {
  let o: BoardServerOptions;
  try {
    o = parseOptions(process.argv.slice(2), process.env);
  } catch (err) {
    console.error(`board: ${(err as Error).message}`);
    process.exitCode = 2;
    return;
  }
  const client = new FlotillaClient({ endpoints: o.endpoints });
  const server = new BoardServer(new Board(client), o.endpoints);
  let url: string;
  try {
    url = await server.listen(o.host, o.port);
  } catch (err) {
    console.error(`board: ${(err as Error).message}`);
    await client.close();
    process.exitCode = 2;
    return;
  }
  console.log(`Board: ${url}  (cluster: ${o.endpoints.join(', ')})`);
  // One stop however many signals come (a repeated Ctrl-C must not cut it short).
  let stopping: Promise<void> | null = null;
  const stop = (): void => {
    stopping ??= server
      .close()
      .then(() => client.close())
      .then(() => console.log('Board: stopped'));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

await main();
