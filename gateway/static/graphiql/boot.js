// Starts GraphiQL on the gateway's own page (GET /graphql), from files the gateway serves itself.
// Queries and mutations go by POST to the page's URL; subscriptions to the same URL over
// graphql-transport-ws. The Headers tab's JSON is sent as HTTP headers and, for subscriptions, as the
// connection_init payload, where the gateway reads Authorization. A file, not an inline script, so the
// page runs under a strict Content-Security-Policy.
(function () {
  "use strict";

  var DEFAULT_HEADERS = '{\n  "Authorization": "Bearer <token>"\n}\n';
  var DEFAULT_QUERY = [
    "# eventshop GraphiQL",
    "#",
    "# Most operations need a token: run",
    "#   .venv/bin/eventshop token --role admin",
    "# and put it in place of <token> in the",
    "# Headers tab below.",
    "",
    "query {",
    "  products(first: 5) {",
    "    totalCount",
    "    nodes { id name price stock }",
    "  }",
    "}",
    "",
  ].join("\n");

  var endpoint = new URL(window.location.href);
  endpoint.search = "";
  endpoint.hash = "";
  var subscriptionUrl = new URL(endpoint.href);
  subscriptionUrl.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";

  var fetcher = GraphiQL.createFetcher({
    url: endpoint.href,
    subscriptionUrl: subscriptionUrl.href,
  });

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: DEFAULT_QUERY,
      defaultHeaders: DEFAULT_HEADERS,
      defaultEditorToolsVisibility: "headers",
      isHeadersEditorEnabled: true,
      inputValueDeprecation: true,
    }),
  );
})();
