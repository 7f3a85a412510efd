// Apollo Client (4.x, application/graphql-response+json preferred) with its persisted-queries link, as a
// storefront would use it, against the gateway at argv[2] with the bearer token of argv[3]: one JSON line per
// step, {step, data} or {step, error: {name, codes}}.
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { createHash } from 'node:crypto';

const [uri, token] = process.argv.slice(2);
const sha256 = (text) => createHash('sha256').update(text).digest('hex');
const requests = [];
const fetchCounting = (url, init) => {
  requests.push(init?.method || 'GET');
  return fetch(url, init);
};
const client = new ApolloClient({
  cache: new InMemoryCache(),
  defaultOptions: { query: { fetchPolicy: 'no-cache' } },
  link: new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({ uri, fetch: fetchCounting, headers: { Authorization: `Bearer ${token}` } }),
  ),
});

async function step(name, run) {
  requests.length = 0;
  try {
    const { data } = await run();
    console.log(JSON.stringify({ step: name, data, requests: [...requests] }));
  } catch (error) {
    const codes = (error.errors || []).map((e) => e.extensions?.code);
    console.log(JSON.stringify({ step: name, error: { name: error.name, codes, message: error.message } }));
  }
}

const PRODUCTS = gql`
  query Catalogue($first: Int!) {
    products(first: $first) {
      nodes {
        id
      }
    }
  }
`;
await step('first', () => client.query({ query: PRODUCTS, variables: { first: 2 } }));
await step('again', () => client.query({ query: PRODUCTS, variables: { first: 2 } }));
await step('invalid', () => client.query({ query: gql`query Typo { products { nodez { id } } }` }));
await step('sign up', () =>
  client.mutate({
    mutation: gql`
      mutation SignUp($input: CreateUserInput!) {
        createUser(input: $input) {
          id
          name
        }
      }
    `,
    variables: { input: { name: 'Apollo', email: `apollo-${Date.now()}-${Math.random()}@example.com` } },
  }),
);
await step('refused', () =>
  client.mutate({
    mutation: gql`
      mutation Pay($id: ID!) {
        payOrder(id: $id, input: { paymentMethod: PIX }) {
          id
        }
      }
    `,
    variables: { id: '999999999' },
  }),
);
