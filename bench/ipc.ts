/**
 * A typed request/answer layer over the Node IPC channel between the bench and
 * its application processes. One request per `call`; answers match by id.
 */
import type { ChildProcess } from 'node:child_process';
import type { RequestMessage, ResponseMessage } from './messages.js';

type Spec = { args: unknown; result: unknown };
export type Handlers<A> = { [K in keyof A]: A[K] extends Spec ? (args: A[K]['args']) => Promise<A[K]['result']> : never };

/** Child side: answers every request with its handler's result or error. */
export function serve<A>(handlers: Handlers<A>): void {
  const table = handlers as Record<string, ((args: unknown) => Promise<unknown>) | undefined>;
  process.on('message', (raw: unknown) => {
    const message = raw as RequestMessage;
    const reply = (response: ResponseMessage): void => {
      if (process.connected) process.send?.(response);
    };
    const handler = table[message.op];
    if (handler === undefined) {
      reply({ id: message.id, ok: false, error: `unknown request ${message.op}` });
      return;
    }
    handler(message.args).then(
      (result) => reply({ id: message.id, ok: true, result }),
      (err: unknown) => reply({ id: message.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
  });
  // The bench is gone (or done with us): nothing left to serve.
  process.on('disconnect', () => process.exit(0));
}

/** Parent side: sends requests to one child and awaits the answers. */
export class IpcClient<A> {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();

  constructor(
    private readonly child: ChildProcess,
    private readonly name: string,
  ) {
    child.on('message', (raw: unknown) => {
      const message = raw as ResponseMessage;
      const waiter = this.waiting.get(message.id);
      if (waiter === undefined) return;
      this.waiting.delete(message.id);
      if (message.ok) waiter.resolve(message.result);
      else waiter.reject(new Error(`${this.name}: ${message.error}`));
    });
    child.on('exit', (code, signal) => {
      const err = new Error(`${this.name} exited (${signal ?? `code ${String(code)}`})`);
      for (const waiter of this.waiting.values()) waiter.reject(err);
      this.waiting.clear();
    });
  }

  call<K extends keyof A & string>(op: K, args: A[K] extends Spec ? A[K]['args'] : never): Promise<A[K] extends Spec ? A[K]['result'] : never> {
    return new Promise((resolve, reject) => {
      if (!this.child.connected) {
        reject(new Error(`${this.name} is not running`));
        return;
      }
      const id = this.nextId++;
      this.waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      const message: RequestMessage = { id, op, args };
      this.child.send(message);
    });
  }
}
