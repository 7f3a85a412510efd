// The GraphQL-over-HTTP reference audits (graphql-http's serverAudits) against the gateway at argv[2]:
// one JSON line per audit ({id, name, status: ok | error (MUST) | warn (SHOULD) | notice (MAY), reason}).
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
for (const audit of serverAudits({ url })) {
  const { id, name, status, reason } = await audit.fn();
  console.log(JSON.stringify({ id, name, status, reason }));
}
