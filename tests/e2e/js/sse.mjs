// graphql-sse's own client ("distinct connections mode") against the gateway at argv[2]: runs the operation
// of argv[3] (JSON: {query, variables}) with the bearer token of argv[4] (may be empty) and prints one JSON
// line per event: {"next": result}, then {"complete": true} or {"error": message}. A line "stop" on stdin
// ends the subscription, as a client that leaves does.
import { createClient } from 'graphql-sse';
import { createInterface } from 'node:readline';

const [url, operation, token] = process.argv.slice(2);
const client = createClient({
  url,
  retryAttempts: 0,
  headers: token ? { Authorization: `Bearer ${token}` } : {},
});
const print = (line) => console.log(JSON.stringify(line));
const unsubscribe = client.subscribe(JSON.parse(operation), {
  next: (result) => print({ next: result }),
  error: (error) => {
    print({ error: String(error && error.message ? error.message : error) });
    process.exit(0);
  },
  complete: () => {
    print({ complete: true });
    process.exit(0);
  },
});
print({ subscribed: true });
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'stop') {
    unsubscribe();
    client.dispose();
    print({ stopped: true });
    process.exit(0);
  }
});
