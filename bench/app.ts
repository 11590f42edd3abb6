/**
 * Entry point of the bench's application processes:
 *   node dist/bench/app.js target   the sinks behind every path
 *   node dist/bench/app.js user     the load generator
 *   (app.js discard is the target's helper that reads the saturating streams)
 * Both take requests from the bench over the IPC channel (bench/ipc.ts).
 */
import { serve } from './ipc.js';
import { TargetApp, runDiscarder } from './app-target.js';
import { UserApp } from './app-user.js';
import type { TargetApi, UserApi } from './messages.js';

const role = process.argv[2];
if (role === 'target') serve<TargetApi>(new TargetApp().handlers);
else if (role === 'user') serve<UserApi>(new UserApp().handlers);
else if (role === 'discard') runDiscarder();
else {
  process.stderr.write('usage: node dist/bench/app.js target|user (spawned by the bench)\n');
  process.exitCode = 2;
}
